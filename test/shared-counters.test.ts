// Counting for workers without Redis (src/cluster/shared-counters.ts): the supervisor's
// CounterBook, and each worker's SupervisorCounters talking to it. Here the IPC channel is a
// plain function call (with the supervisor's answer sent back the same way), so every ordering
// can be set up; test/workers.test.ts runs the same over real worker processes.
import { describe, expect, test } from "bun:test";
import type { SupervisorMessage, WorkerMessage } from "../src/cluster/messages.ts";
import { CounterBook, SupervisorCounters } from "../src/cluster/shared-counters.ts";
import { UNAVAILABLE_KEY } from "../src/limits/counters.ts";

/** A worker's counters wired to `book` as worker `pid`; `hold` keeps the supervisor's answers back until `deliver()`. */
function worker(book: CounterBook, pid: number, opts: { hold?: boolean; connected?: () => boolean; timeoutMs?: number; now?: () => number; maxAsked?: number } = {}) {
  const held: SupervisorMessage[] = [];
  const sent: WorkerMessage[] = [];
  let counters: SupervisorCounters;
  const receive = (m: SupervisorMessage) => {
    if (m.t === "acquired") counters.answered(m.q, m.result);
    if (m.t === "totals") counters.totalsAnswered(m.f, m.totals);
  };
  const answer = (m: SupervisorMessage) => (opts.hold ? held.push(m) : queueMicrotask(() => receive(m)));
  counters = new SupervisorCounters(
    (m) => {
      if (opts.connected && !opts.connected()) return false;
      sent.push(m);
      if (m.t === "acquire") answer({ t: "acquired", q: m.q, result: book.acquire(pid, m.specs) });
      if (m.t === "release") book.release(pid, m.lease);
      if (m.t === "bytes") answer({ t: "totals", f: m.f, totals: book.addBytes(m.adds) });
      return true;
    },
    { timeoutMs: opts.timeoutMs ?? 1000, flushMs: 3_600_000, now: opts.now, maxAsked: opts.maxAsked },
  );
  return {
    counters,
    sent,
    deliver: () => {
      for (const m of held.splice(0)) receive(m);
    },
  };
}

const cap = (key: string, max: number) => [{ key, max }];

describe("CounterBook", () => {
  test("one set of counts for every worker; a refusal names the key and takes nothing", () => {
    const book = new CounterBook();
    const a = book.acquire(1, [...cap("sessions", 3), ...cap("ip:1.2.3.4", 2)]);
    const b = book.acquire(2, [...cap("sessions", 3), ...cap("ip:1.2.3.4", 2)]);
    expect([a.ok, b.ok]).toEqual([true, true]);
    expect(book.acquire(2, [...cap("sessions", 3), ...cap("ip:1.2.3.4", 2)])).toEqual({ ok: false, key: "ip:1.2.3.4", max: 2 });
    expect(book.count("sessions")).toBe(2); // the refusal took no session unit
    expect(book.acquire(1, cap("sessions", 3)).ok).toBe(true);
    expect(book.acquire(1, cap("sessions", 3))).toEqual({ ok: false, key: "sessions", max: 3 });
  });

  test("a lease is given back only by the worker that holds it; a dead worker's leases all come back", () => {
    const book = new CounterBook();
    const a1 = book.acquire(1, cap("k", 3));
    const a2 = book.acquire(1, cap("k", 3));
    const b1 = book.acquire(2, cap("k", 3));
    if (!a1.ok || !a2.ok || !b1.ok) throw new Error("granted");
    book.release(2, a1.lease); // not worker 2's
    expect(book.count("k")).toBe(3);
    book.release(1, a1.lease);
    book.release(1, a1.lease); // twice: once
    expect(book.count("k")).toBe(2);
    book.gone(1);
    expect([book.count("k"), book.size]).toEqual([1, 1]);
    book.release(1, a2.lease); // already back with the exit
    expect(book.count("k")).toBe(1);
  });

  test("malformed specs throw (the supervisor answers them as refusals); unlimited keys cost nothing", () => {
    const book = new CounterBook();
    expect(() => book.acquire(1, cap("", 1))).toThrow();
    expect(() => book.acquire(1, cap("k", -1))).toThrow();
    const free = book.acquire(1, cap("k", 0));
    expect(free.ok).toBe(true);
    expect(book.count("k")).toBe(0);
  });

  test("bytes add up over workers; a zero only asks the total", () => {
    const book = new CounterBook();
    expect(book.addBytes([["id:a", 100]])).toEqual([["id:a", 100]]);
    expect(book.addBytes([["id:a", 50], ["id:b", 0]])).toEqual([["id:a", 150], ["id:b", 0]]);
    expect(book.addBytes([["id:a", 0]])).toEqual([["id:a", 150]]);
  });
});

describe("SupervisorCounters", () => {
  test("two workers share the supervisor's caps; release gives the unit back to both", async () => {
    const book = new CounterBook();
    const a = worker(book, 1).counters;
    const b = worker(book, 2).counters;
    const first = await a.acquire(cap("id:x:sessions", 2));
    expect((await b.acquire(cap("id:x:sessions", 2))).ok).toBe(true);
    expect(await a.acquire(cap("id:x:sessions", 2))).toEqual({ ok: false, key: "id:x:sessions", max: 2, reason: "limit" });
    expect(await b.acquire(cap("id:x:sessions", 2))).toEqual({ ok: false, key: "id:x:sessions", max: 2, reason: "limit" });
    if (!first.ok) throw new Error("granted");
    first.lease.release();
    first.lease.release(); // idempotent: one release message
    expect((await b.acquire(cap("id:x:sessions", 2))).ok).toBe(true);
    expect(b.state).toEqual({ backend: "supervisor", redisUp: false, errors: 0, fallbacks: 0 });
  });

  test("only limited specs cross the channel; none at all is granted without asking", async () => {
    const book = new CounterBook();
    const w = worker(book, 1);
    expect((await w.counters.acquire(cap("k", 0))).ok).toBe(true);
    expect(w.sent).toEqual([]);
    await w.counters.acquire([...cap("k", 0), ...cap("j", 4), ...cap("j", 2)]);
    expect(w.sent).toEqual([{ t: "acquire", q: 1, specs: [{ key: "j", max: 2 }] }]);
  });

  test("no answer within the timeout: refused as unavailable, and a grant that comes later goes straight back", async () => {
    const book = new CounterBook();
    const w = worker(book, 1, { hold: true, timeoutMs: 30 });
    const got = await w.counters.acquire(cap("k", 1));
    expect(got).toEqual({ ok: false, key: UNAVAILABLE_KEY, max: 0, reason: "unavailable" }); // as RedisCounters reports it
    expect(book.count("k")).toBe(1); // granted in the supervisor, the answer held back
    w.deliver();
    expect(book.count("k")).toBe(0); // the late grant was released
    expect(w.counters.state.fallbacks).toBe(1);
  });

  test("a supervisor that never answers: past maxAsked questions (timed-out ones included) an acquire is refused without asking", async () => {
    const book = new CounterBook();
    const w = worker(book, 1, { hold: true, timeoutMs: 20, maxAsked: 2 });
    expect(await w.counters.acquire(cap("k", 9))).toMatchObject({ ok: false, reason: "unavailable" }); // timed out, still awaits its late grant
    const waiting = w.counters.acquire(cap("k", 9));
    const sentBefore = w.sent.length;
    expect(await w.counters.acquire(cap("k", 9))).toEqual({ ok: false, key: UNAVAILABLE_KEY, max: 0, reason: "unavailable" });
    expect(w.sent.length).toBe(sentBefore); // not asked
    expect(await waiting).toMatchObject({ ok: false, reason: "unavailable" });
    w.deliver(); // the late grants are given back, and the questions are answered
    expect(book.count("k")).toBe(0);
    expect((await w.counters.acquire(cap("k", 9))).ok).toBe(false); // held back again, but asked
    expect(w.sent.filter((m) => m.t === "acquire").length).toBe(3);
    expect(w.counters.state.fallbacks).toBe(4);
    await w.counters.close();
  });

  test("a closed channel refuses at once; close() answers what still waits", async () => {
    const book = new CounterBook();
    let connected = true;
    const w = worker(book, 1, { hold: true, connected: () => connected, timeoutMs: 60_000 });
    const waiting = w.counters.acquire(cap("k", 1));
    connected = false;
    expect((await w.counters.acquire(cap("k", 1))).ok).toBe(false);
    await w.counters.close();
    expect(await waiting).toMatchObject({ ok: false, reason: "unavailable" });
  });

  test("bytes: each worker's adds reach the supervisor on flush, and every worker sees the total", async () => {
    const book = new CounterBook();
    const a = worker(book, 1).counters;
    const b = worker(book, 2).counters;
    expect(a.addBytes("id:q", 600)).toBe(600); // addBytes answers the day's total
    expect(a.bytesToday("id:q")).toBe(600); // its own part at once
    expect(b.bytesToday("id:q")).toBe(0); // b uses the key from now on: its flushes ask for it
    a.flush();
    b.flush();
    await Promise.resolve();
    expect(b.bytesToday("id:q")).toBe(600);
    expect(b.addBytes("id:q", 400)).toBe(1000);
    a.addBytes("id:q", 1);
    expect(b.bytesToday("id:q")).toBe(1000);
    b.flush();
    a.flush(); // sent, not answered yet: its own byte counts once; b's 400 come with the answer
    expect(a.bytesToday("id:q")).toBe(601);
    await Promise.resolve();
    expect([a.bytesToday("id:q"), b.bytesToday("id:q")]).toEqual([1001, 1000]); // b's view waits for its next flush
    b.flush();
    await Promise.resolve();
    expect(b.bytesToday("id:q")).toBe(1001);
    a.addBytes("id:q", 0);
    expect(a.addBytes("id:q", Number.NaN)).toBe(1001);
    expect(a.bytesToday("id:q")).toBe(1001);
  });

  test("a flush answered after UTC midnight settles yesterday's entry, not today's", async () => {
    let now = Date.parse("2030-05-01T23:59:59.000Z");
    const book = new CounterBook({ now: () => now });
    const w = worker(book, 1, { hold: true, now: () => now });
    w.counters.addBytes("id:q", 100);
    w.counters.flush(); // sent before midnight, answered after it
    now = Date.parse("2030-05-02T00:00:01.000Z");
    w.counters.addBytes("id:q", 5);
    w.deliver();
    expect(w.counters.bytesToday("id:q")).toBe(5);
    w.counters.flush();
    w.deliver();
    expect(book.addBytes([["id:q", 0]])).toEqual([["id:q", 5]]);
    expect(w.counters.bytesToday("id:q")).toBe(5); // yesterday's 100 neither subtracted nor kept
    w.counters.addBytes("id:q", 1);
    expect(w.counters.bytesToday("id:q")).toBe(6);
  });
});
