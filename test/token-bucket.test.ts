import { describe, expect, test } from "bun:test";
import { BYTES_PER_SEC_PER_MBPS, TokenBucket } from "../src/limits/token-bucket.ts";

describe("TokenBucket", () => {
  test("starts full: one second of burst goes through at once", () => {
    const b = new TokenBucket(1000, 1000, 0);
    expect(b.available(0)).toBe(1000);
    expect(b.consume(1000, 0)).toBe(0);
    expect(b.available(0)).toBe(0);
  });
  test("debt gives the delay until non-negative", () => {
    const b = new TokenBucket(1000, 1000, 0);
    expect(b.consume(1500, 0)).toBe(500); // 500 bytes of debt at 1000 B/s
    expect(b.delay(250)).toBe(250);
    expect(b.delay(500)).toBe(0);
    expect(b.consume(100, 500)).toBe(100);
  });
  test("refills at the rate, capped at burst", () => {
    const b = new TokenBucket(1000, 1000, 0);
    b.consume(1000, 0);
    expect(b.available(100)).toBeCloseTo(100);
    expect(b.available(10_000)).toBe(1000);
  });
  test("one large write is never refused, only delayed", () => {
    const b = new TokenBucket(1000, 1000, 0);
    expect(b.consume(10_000, 0)).toBe(9000);
  });
  test("clock going backwards neither mints nor destroys tokens", () => {
    const b = new TokenBucket(1000, 1000, 1000);
    b.consume(500, 1000);
    expect(b.available(0)).toBe(500);
    expect(b.available(1000)).toBe(500);
    expect(b.available(1100)).toBeCloseTo(600);
  });
  test("tryTake pays in full or spends nothing, never goes into debt", () => {
    const b = new TokenBucket(1000, 1000, 0);
    expect(b.tryTake(300, 0)).toBe(true);
    expect(b.tryTake(5000, 0)).toBe(false); // refused whole: the 700 left are not spent
    expect(b.available(0)).toBe(700);
    expect(b.tryTake(700, 0)).toBe(true);
    expect(b.tryTake(10, 0)).toBe(false);
    expect(b.tryTake(10, 5)).toBe(false); // 5 tokens back after 5 ms: still not 10
    expect(b.tryTake(10, 10)).toBe(true);
    expect(b.available(10)).toBe(0);
  });
  test("rate 0 is unlimited", () => {
    const b = new TokenBucket(0, 0, 0);
    expect(b.unlimited).toBe(true);
    expect(b.consume(1e12, 0)).toBe(0);
    expect(b.delay(0)).toBe(0);
    expect(b.available(0)).toBe(Infinity);
    expect(b.tryTake(123, 0)).toBe(true);
  });
  test("forMbps: mbps x 125000 B/s with a one-second burst", () => {
    const b = TokenBucket.forMbps(10, 0);
    expect(b.rate).toBe(10 * BYTES_PER_SEC_PER_MBPS);
    expect(b.burst).toBe(1_250_000);
    expect(b.consume(1_250_000 + 125_000, 0)).toBe(100);
    expect(TokenBucket.forMbps(0, 0).unlimited).toBe(true);
    expect(TokenBucket.forMbps(0.5, 0).rate).toBe(62_500);
  });
  test("sustained rate over simulated time matches the limit", () => {
    const b = TokenBucket.forMbps(1, 0); // 125000 B/s
    let now = 0;
    let sent = 0;
    while (now < 10_000) {
      const wait = b.consume(16_384, now);
      sent += 16_384;
      now += wait;
    }
    // burst (1 s) + 10 s of rate, within one chunk
    expect(Math.abs(sent - (125_000 + 125_000 * 10))).toBeLessThanOrEqual(16_384);
  });
  test("default burst is one second of rate", () => {
    expect(new TokenBucket(5000).burst).toBe(5000);
  });
  test("rejects negative or non-finite rates", () => {
    expect(() => new TokenBucket(-1)).toThrow(RangeError);
    expect(() => new TokenBucket(Number.NaN)).toThrow(RangeError);
    expect(() => new TokenBucket(Infinity)).toThrow(RangeError);
  });
});
