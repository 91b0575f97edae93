// Small pieces with their own rules: the memory watch (over, and back under with some room),
// the per-identity shared buckets (one per identity while used, gone after), the id table.
import { describe, expect, test } from "bun:test";
import { MemoryWatch } from "../src/limits/memory-watch.ts";
import { SharedBuckets } from "../src/limits/shared-buckets.ts";
import { SERVER_ID_BASE } from "../src/constants.ts";
import { IdTable } from "../src/session/ids.ts";

describe("MemoryWatch", () => {
  test("over the budget at once; back under only below 95 % of it, and then every waiter runs once", () => {
    let used = 50;
    const w = new MemoryWatch(100, () => used, 60_000);
    expect(w.overloaded()).toBe(false);
    let cleared = 0;
    used = 101;
    expect(w.overloaded(true)).toBe(true);
    w.onCleared(() => cleared++);
    const cancel = w.onCleared(() => cleared += 100);
    cancel();
    used = 96; // under the budget, not under 95 % of it: still over
    expect(w.overloaded(true)).toBe(true);
    expect(cleared).toBe(0);
    used = 94;
    expect(w.overloaded(true)).toBe(false);
    expect(cleared).toBe(1);
    w.check();
    expect(cleared).toBe(1);
    expect(w.used).toBe(94);
    w.close();
  });
});

describe("SharedBuckets", () => {
  test("sessions of one identity share one bucket; it goes when the last lets go; 0 Mbps is none", () => {
    const b = new SharedBuckets();
    const a1 = b.use("sub:alice", 4);
    const a2 = b.use("sub:alice", 4);
    const bob = b.use("sub:bob", 4);
    expect(a1.bucket).toBe(a2.bucket);
    expect(bob.bucket).not.toBe(a1.bucket);
    expect(b.size).toBe(2);
    a1.release();
    a1.release(); // twice is once
    expect(b.size).toBe(2);
    a2.release();
    expect(b.size).toBe(1);
    expect(b.use("sub:carol", 0).bucket).toBeNull();
    expect(b.size).toBe(1);
  });
});

describe("IdTable", () => {
  test("reserved ids count as in use; an old resource cannot unregister a newer one under the same id", () => {
    const t = new IdTable<object>();
    t.reserve(1);
    expect([t.inUse(1), t.size]).toEqual([true, 1]);
    expect(t.unreserve(1)).toBe(true);
    expect(t.unreserve(1)).toBe(false);
    const old = {};
    const fresh = {};
    t.set(2, old);
    t.delete(2, old);
    t.set(2, fresh);
    expect(t.delete(2, old)).toBe(false);
    expect(t.get(2)).toBe(fresh);
  });

  test("server ids start far above client ids and skip ids in use", () => {
    const t = new IdTable<object>();
    t.set(SERVER_ID_BASE, {});
    t.reserve(SERVER_ID_BASE + 1);
    expect(t.allocateServerId()).toBe(SERVER_ID_BASE + 2);
  });
});
