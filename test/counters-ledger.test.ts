// The byte ledger behind RedisCounters and SupervisorCounters (src/limits/byte-ledger.ts): what
// each flush sends, and what it keeps across UTC midnight and while nothing can be flushed.
import { describe, expect, test } from "bun:test";
import { ByteLedger } from "../src/limits/byte-ledger.ts";

const HOUR = 3_600_000;

function ledger(start: string, keepPastMs: number) {
  const clock = { now: Date.parse(start) };
  const l = new ByteLedger({ now: () => clock.now, watchMs: 60_000, keepPastMs });
  const days = () => (l as unknown as { past: { totals: Map<string, unknown> }[] }).past.map((d) => [...d.totals.keys()]);
  return { l, clock, days };
}

const flushed = (l: ByteLedger) => l.takeFlush().map((d) => [d.day, d.sent.map((s) => [s.key, s.n])]);

describe("ByteLedger", () => {
  test("a flush sends pending bytes and asks the totals of keys in use; confirm sets the known total", () => {
    const { l } = ledger("2030-05-01T12:00:00Z", 0);
    expect(l.add("a", 10)).toBe(10);
    expect(l.total("b")).toBe(0);
    const [today] = l.takeFlush();
    expect(today!.sent.map((s) => [s.key, s.n])).toEqual([["a", 10], ["b", 0]]);
    expect(l.add("a", 1)).toBe(11); // inflight still counts
    l.confirm(today!.sent, [100, 40]);
    expect([l.total("a"), l.total("b")]).toEqual([101, 40]);
  });

  test("restore puts unconfirmed bytes back for the next flush", () => {
    const { l } = ledger("2030-05-01T12:00:00Z", 0);
    l.add("a", 10);
    const [today] = l.takeFlush();
    l.restore(today!.sent);
    expect(l.total("a")).toBe(10);
    expect(flushed(l)).toEqual([["2030-05-01", [["a", 10]]]]);
  });

  test("at midnight only entries with bytes to send are kept for their day; flushed ones are dropped", () => {
    const { l, clock, days } = ledger("2030-05-01T23:59:00Z", 48 * HOUR);
    l.add("flushed", 5);
    l.add("sending", 6);
    const [first] = l.takeFlush();
    l.confirm(first!.sent.filter((s) => s.key === "flushed"), [5]);
    l.add("pending", 7);
    l.total("idle");
    clock.now = Date.parse("2030-05-02T00:00:01Z");
    expect(l.total("flushed")).toBe(0);
    expect(days()).toEqual([["sending", "pending"]]);
    expect(flushed(l)).toEqual([
      ["2030-05-01", [["pending", 7]]],
      ["2030-05-02", [["flushed", 0]]],
    ]);
  });

  test("past days older than keepPastMs are dropped even if nothing was ever flushed", () => {
    const { l, clock, days } = ledger("2030-05-01T12:00:00Z", 48 * HOUR);
    l.add("a", 1);
    clock.now = Date.parse("2030-05-02T12:00:00Z");
    l.add("b", 1);
    clock.now = Date.parse("2030-05-03T12:00:00Z");
    l.prune(false);
    expect(days()).toEqual([["a"], ["b"]]);
    clock.now = Date.parse("2030-05-04T00:00:01Z"); // a's day ended more than 48 h ago
    l.prune(false);
    expect(days()).toEqual([["b"]]);
  });

  test("prune while nothing can be flushed drops idle zero entries but keeps known totals", () => {
    const { l, clock } = ledger("2030-05-01T12:00:00Z", 0);
    l.add("known", 10);
    l.total("zero");
    const [today] = l.takeFlush();
    l.confirm(today!.sent, [500, 0]);
    clock.now += 120_000; // both idle
    l.prune(false);
    expect(l.size).toBe(1);
    expect(l.total("known")).toBe(500);
    clock.now += 120_000;
    l.prune(true);
    expect(l.size).toBe(0);
  });
});
