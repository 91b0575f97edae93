// The in-process counters: caps, all-or-nothing multi-key acquires, releases, daily byte totals.
import { describe, expect, test } from "bun:test";
import { limitedSpecs } from "../src/limits/counters.ts";
import { LocalCounters } from "../src/limits/local-counters.ts";

async function take(c: LocalCounters, specs: { key: string; max: number }[]) {
  const r = await c.acquire(specs);
  if (!r.ok) throw new Error(`refused on ${r.key}`);
  return r.lease;
}

describe("LocalCounters leases", () => {
  test("a cap admits max units, refuses the next with the key and max", async () => {
    const c = new LocalCounters();
    const spec = [{ key: "ip:1.2.3.4", max: 2 }];
    await take(c, spec);
    await take(c, spec);
    expect(await c.acquire(spec)).toEqual({ ok: false, key: "ip:1.2.3.4", max: 2, reason: "limit" });
    expect(c.count("ip:1.2.3.4")).toBe(2);
  });

  test("a refusal on one key takes nothing from the others", async () => {
    const c = new LocalCounters();
    await take(c, [{ key: "id:alice:sessions", max: 1 }]);
    const r = await c.acquire([
      { key: "sessions", max: 10 },
      { key: "ip:1.2.3.4", max: 10 },
      { key: "id:alice:sessions", max: 1 },
    ]);
    expect(r).toEqual({ ok: false, key: "id:alice:sessions", max: 1, reason: "limit" });
    expect(c.count("sessions")).toBe(0);
    expect(c.count("ip:1.2.3.4")).toBe(0);
    expect(c.count("id:alice:sessions")).toBe(1);
  });

  test("a grant takes one unit of every key", async () => {
    const c = new LocalCounters();
    await take(c, [
      { key: "sessions", max: 10 },
      { key: "ip:1.2.3.4", max: 3 },
    ]);
    expect(c.count("sessions")).toBe(1);
    expect(c.count("ip:1.2.3.4")).toBe(1);
  });

  test("release frees every key and is idempotent; counters at zero disappear", async () => {
    const c = new LocalCounters();
    const spec = [
      { key: "a", max: 1 },
      { key: "b", max: 2 },
    ];
    const lease = await take(c, spec);
    const other = await take(c, [{ key: "b", max: 2 }]);
    expect((await c.acquire(spec)).ok).toBe(false);
    lease.release();
    lease.release();
    expect(c.count("a")).toBe(0);
    expect(c.count("b")).toBe(1); // the second release did not free `other`'s unit
    const again = await take(c, spec);
    expect(c.count("b")).toBe(2);
    again.release();
    other.release();
    expect(c.count("a")).toBe(0);
    expect(c.count("b")).toBe(0);
    expect((c as unknown as { counts: Map<string, number> }).counts.size).toBe(0);
  });

  test("max 0 is unlimited and uncounted; the same key twice is one unit under the smaller max", async () => {
    const c = new LocalCounters();
    for (let i = 0; i < 100; i++) await take(c, [{ key: "free", max: 0 }]);
    expect(c.count("free")).toBe(0);
    await take(c, [
      { key: "k", max: 5 },
      { key: "k", max: 1 },
    ]);
    expect(c.count("k")).toBe(1);
    expect(await c.acquire([{ key: "k", max: 5 }, { key: "k", max: 1 }])).toEqual({ ok: false, key: "k", max: 1, reason: "limit" });
  });

  test("malformed specs are caller bugs: they throw", async () => {
    const c = new LocalCounters();
    await expect(c.acquire([{ key: "k", max: -1 }])).rejects.toThrow(RangeError);
    await expect(c.acquire([{ key: "k", max: 1.5 }])).rejects.toThrow(RangeError);
    await expect(c.acquire([{ key: "", max: 1 }])).rejects.toThrow(TypeError);
    expect(limitedSpecs([{ key: "k", max: 0 }])).toEqual([]);
  });
});

describe("LocalCounters daily bytes", () => {
  test("bytes add up per key within a UTC day and start again at UTC midnight", () => {
    let now = Date.parse("2030-05-01T23:59:59.000Z");
    const c = new LocalCounters({ now: () => now });
    expect(c.addBytes("id:alice", 1000)).toBe(1000); // addBytes answers the day's total
    expect(c.addBytes("id:alice", 500)).toBe(1500);
    expect(c.addBytes("id:bob", 7)).toBe(7);
    expect(c.bytesToday("id:alice")).toBe(1500);
    expect(c.bytesToday("id:bob")).toBe(7);
    expect(c.bytesToday("id:nobody")).toBe(0);
    now = Date.parse("2030-05-02T00:00:00.000Z");
    expect(c.bytesToday("id:alice")).toBe(0);
    expect(c.addBytes("id:alice", 3)).toBe(3);
    expect(c.bytesToday("id:alice")).toBe(3);
  });

  test("a clock stepped back across midnight does not revive the old day", () => {
    let now = Date.parse("2030-05-02T00:00:01.000Z");
    const c = new LocalCounters({ now: () => now });
    c.addBytes("k", 10);
    now = Date.parse("2030-05-01T23:59:59.000Z");
    expect(c.bytesToday("k")).toBe(0);
  });

  test("zero, negative and non-finite byte counts are ignored", () => {
    const c = new LocalCounters();
    c.addBytes("k", 0);
    c.addBytes("k", -5);
    c.addBytes("k", NaN);
    expect(c.addBytes("k", Infinity)).toBe(0); // ignored, still answers the total
    expect(c.bytesToday("k")).toBe(0);
    expect(c.addBytes("k", 1)).toBe(1);
    expect(c.bytesToday("k")).toBe(1);
  });

  test("state says local", () => {
    expect(new LocalCounters().state).toEqual({ backend: "local", redisUp: false, errors: 0, fallbacks: 0 });
  });
});
