// KeyedRate (src/limits/keyed-rate.ts): a burst, then the rate; keys apart; memory bounded.
import { describe, expect, test } from "bun:test";
import { KeyedRate } from "../src/limits/keyed-rate.ts";

describe("KeyedRate", () => {
  test("a full burst at once, then one event per 1/perSec; each key on its own", () => {
    const r = new KeyedRate(5, 3);
    expect([1, 2, 3, 4].map(() => r.allow("a", 0))).toEqual([true, true, true, false]);
    expect(r.allow("b", 0)).toBe(true); // another key has its own burst
    expect(r.allow("a", 199)).toBe(false); // 0.995 of a token
    expect(r.allow("a", 200)).toBe(true);
    expect(r.allow("a", 200)).toBe(false);
    expect([r.allow("a", 10_000), r.allow("a", 10_000), r.allow("a", 10_000), r.allow("a", 10_000)]).toEqual([true, true, true, false]); // refilled to the burst, not beyond
  });

  test("a refused event costs nothing; a clock stepped back mints nothing", () => {
    const r = new KeyedRate(1, 1);
    expect(r.allow("a", 1000)).toBe(true);
    for (let i = 0; i < 10; i++) expect(r.allow("a", 1500)).toBe(false);
    expect(r.allow("a", 2000)).toBe(true); // the refusals did not push it further into debt
    expect(r.allow("a", 0)).toBe(false); // back in time: no tokens from it
    expect(r.allow("a", 2999)).toBe(false);
    expect(r.allow("a", 3000)).toBe(true);
  });

  test("at most maxKeys are kept: the least recently seen goes, and comes back with a full burst", () => {
    const r = new KeyedRate(1, 1, 2);
    expect(r.allow("a", 0)).toBe(true);
    expect(r.allow("b", 0)).toBe(true);
    expect(r.allow("a", 0)).toBe(false); // a is now the most recently seen
    expect(r.allow("c", 0)).toBe(true); // b goes
    expect(r.size).toBe(2);
    expect(r.allow("a", 0)).toBe(false); // a was kept
    expect(r.allow("b", 0)).toBe(true); // b comes back fresh
  });

  test("bad settings throw", () => {
    expect(() => new KeyedRate(0, 1)).toThrow();
    expect(() => new KeyedRate(1, 0)).toThrow();
    expect(() => new KeyedRate(1, 1, 0)).toThrow();
  });
});
