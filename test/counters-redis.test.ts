// Cluster-wide counters on a real redis-server (started here on a free loopback port): caps that
// hold across instances and processes, leases that free themselves when their holder is killed,
// Redis stopped or hung ("local" and "deny"), Redis back, and shared daily byte totals.
// Without redis-server every test is skipped with a loud warning; where CI requires it, they fail.
import { RedisClient } from "bun";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Acquired, LimitSpec } from "../src/limits/counters.ts";
import { RedisCounters, type RedisCountersOptions } from "../src/limits/redis-counters.ts";
import { needing } from "./helpers/components.ts";
import { startRedis, type RedisProcess } from "./helpers/redis-server.ts";
import { DEFAULT_WAIT_MS, waitFor } from "./helpers/wait.ts";

const redisTests = needing("redis-server");
const it = redisTests.test;

/** waitFor, and how long the wait took (reported as a measurement, never asserted on). */
async function waited(cond: () => unknown, what: string, timeoutMs = DEFAULT_WAIT_MS): Promise<number> {
  const start = performance.now();
  await waitFor(cond, { what, timeoutMs, intervalMs: 20 });
  return performance.now() - start;
}

interface LogLine {
  level: "warn" | "info";
  msg: string;
  fields?: Record<string, unknown>;
}

let redis: RedisProcess;
let prefixSeq = 0;
const open: RedisCounters[] = [];
const extraRedis: RedisProcess[] = [];

/** A fresh key namespace per test, so tests sharing the Redis never see each other's leases. */
function newPrefix(): string {
  return `test${process.pid}.${++prefixSeq}:`;
}

function counters(opts: Partial<RedisCountersOptions> & { logs?: LogLine[] } = {}): RedisCounters {
  const logs = opts.logs ?? [];
  const c = new RedisCounters({
    url: redis.url,
    timeoutMs: 300,
    probeMs: 100,
    logger: {
      warn: (msg, fields) => logs.push({ level: "warn", msg, fields }),
      info: (msg, fields) => logs.push({ level: "info", msg, fields }),
    },
    ...opts,
  });
  open.push(c);
  return c;
}

async function granted(c: RedisCounters, specs: LimitSpec[]) {
  const r = await c.acquire(specs);
  if (!r.ok) throw new Error(`refused on ${r.key} (${r.reason})`);
  return r.lease;
}

/** acquire, and how long it took. */
async function timed(c: RedisCounters, specs: LimitSpec[]): Promise<[Acquired, number]> {
  const start = performance.now();
  const r = await c.acquire(specs);
  return [r, performance.now() - start];
}

beforeAll(async () => {
  if (redisTests.available) redis = await startRedis();
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
  await Promise.all(extraRedis.splice(0).map((r) => r.kill()));
});

afterAll(async () => {
  if (redisTests.available) await redis.kill();
});

describe("RedisCounters across instances", () => {
  it("a cap of 2 holds across two instances: the third is refused on either", async () => {
    const prefix = newPrefix();
    const a = counters({ prefix });
    const b = counters({ prefix });
    expect(await a.ready()).toBe(true);
    expect(await b.ready()).toBe(true);
    const spec = [{ key: "id:alice:sessions", max: 2 }];
    const first = await granted(a, spec);
    await granted(b, spec);
    expect(await a.acquire(spec)).toEqual({ ok: false, key: "id:alice:sessions", max: 2, reason: "limit" });
    expect(await b.acquire(spec)).toEqual({ ok: false, key: "id:alice:sessions", max: 2, reason: "limit" });
    first.release();
    first.release(); // idempotent: must not free b's unit
    // The release is sent without being awaited; the next acquire on the same connection runs after it.
    await granted(a, spec);
    expect((await b.acquire(spec)).ok).toBe(false);
    expect(a.state).toEqual({ backend: "redis", redisUp: true, errors: 0, fallbacks: 0 });
  });

  it("a refusal on one key takes nothing from the others, across instances", async () => {
    const prefix = newPrefix();
    const a = counters({ prefix });
    const b = counters({ prefix });
    await granted(a, [{ key: "id:bob:sessions", max: 1 }]);
    const r = await b.acquire([
      { key: "sessions", max: 100 },
      { key: "ip:10.0.0.1", max: 5 },
      { key: "id:bob:sessions", max: 1 },
    ]);
    expect(r).toEqual({ ok: false, key: "id:bob:sessions", max: 1, reason: "limit" });
    const raw = new RedisClient(redis.url);
    try {
      expect(await raw.send("ZCARD", [`${prefix}lease:sessions`])).toBe(0);
      expect(await raw.send("ZCARD", [`${prefix}lease:ip:10.0.0.1`])).toBe(0);
      expect(await raw.send("ZCARD", [`${prefix}lease:id:bob:sessions`])).toBe(1);
    } finally {
      raw.close();
    }
    // And the untouched keys still have their full room.
    for (let i = 0; i < 5; i++) await granted(b, [{ key: "ip:10.0.0.1", max: 5 }]);
    expect((await a.acquire([{ key: "ip:10.0.0.1", max: 5 }])).ok).toBe(false);
  });

  it("held leases outlive lease_secs because they are renewed", async () => {
    const prefix = newPrefix();
    const a = counters({ prefix, leaseSecs: 1 });
    const b = counters({ prefix, leaseSecs: 1 });
    const spec = [{ key: "k", max: 1 }];
    await granted(a, spec);
    // The point is the passage of time: 2.5 lease lifetimes, so only renewal can keep the lease.
    await Bun.sleep(2500);
    expect(await b.acquire(spec)).toEqual({ ok: false, key: "k", max: 1, reason: "limit" });
  });

  it("kill -9 of a process holding leases: another instance acquires again within lease_secs + 2 s", async () => {
    const prefix = newPrefix();
    const leaseSecs = 2;
    const holder = Bun.spawn([process.execPath, join(import.meta.dir, "fixtures/lease-holder.ts"), redis.url, prefix, String(leaseSecs), "id:carol:sessions", "2", "2"], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "inherit",
    });
    try {
      const reader = holder.stdout.getReader();
      let out = "";
      while (!out.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        out += new TextDecoder().decode(value);
      }
      expect(out).toBe("held 2\n");
      const b = counters({ prefix, leaseSecs });
      const spec = [{ key: "id:carol:sessions", max: 2 }];
      expect(await b.acquire(spec)).toEqual({ ok: false, key: "id:carol:sessions", max: 2, reason: "limit" });
      holder.kill("SIGKILL");
      await holder.exited;
      const killedAt = performance.now();
      let lease;
      await waited(
        async () => {
          const r = await b.acquire(spec);
          if (r.ok) lease = r.lease;
          return r.ok;
        },
        "the killed process's leases to expire",
        (leaseSecs + 2) * 1000,
      );
      const freedAfter = performance.now() - killedAt;
      console.log(`kill -9: leases free again after ${freedAfter.toFixed(0)} ms (lease_secs ${leaseSecs})`);
      expect(lease).toBeDefined();
      await granted(b, spec); // both of the dead process's units are free
    } finally {
      holder.kill("SIGKILL");
    }
  });
});

describe("RedisCounters when Redis fails", () => {
  it('Redis killed, "local": keeps granting under this process\'s own counts, never hangs, then cluster limits hold again', async () => {
    const own = await startRedis();
    extraRedis.push(own);
    const prefix = newPrefix();
    const logs: LogLine[] = [];
    const a = counters({ url: own.url, prefix, logs, leaseSecs: 2 });
    const b = counters({ url: own.url, prefix, leaseSecs: 2 });
    const spec = [{ key: "ip:192.0.2.1", max: 2 }];
    await granted(a, spec); // a Redis lease, which a keeps counting against itself
    await own.kill();
    const [r1, t1] = await timed(a, spec);
    const [r2, t2] = await timed(a, spec);
    console.log(`redis killed: local-mode acquires answered in ${t1.toFixed(1)} ms, ${t2.toFixed(1)} ms`);
    expect(r1.ok).toBe(true);
    expect(r2).toEqual({ ok: false, key: "ip:192.0.2.1", max: 2, reason: "limit" });
    for (const t of [t1, t2]) expect(t).toBeLessThan(300 + 2000);
    expect(a.state.redisUp).toBe(false);
    expect(a.state.fallbacks).toBe(2);
    expect(logs.filter((l) => l.level === "warn" && l.msg.startsWith("redis unavailable"))).toHaveLength(1);
    if (r1.ok) r1.lease.release();

    // Redis back, empty (no persistence): a's Redis lease is added back before a goes live again.
    const restarted = await startRedis(own.port);
    extraRedis.push(restarted);
    const back = await waited(() => a.state.redisUp && b.state.redisUp, "both instances to reconnect");
    console.log(`redis restarted: both instances back on Redis within ${back.toFixed(0)} ms`);
    expect(logs.some((l) => l.level === "info" && l.msg.startsWith("redis available again"))).toBe(true);
    await granted(b, spec);
    expect(await b.acquire(spec)).toEqual({ ok: false, key: "ip:192.0.2.1", max: 2, reason: "limit" });
    expect(await a.acquire(spec)).toEqual({ ok: false, key: "ip:192.0.2.1", max: 2, reason: "limit" });
    expect(logs.filter((l) => l.msg.startsWith("redis unavailable"))).toHaveLength(1);
  });

  it("Redis hung (SIGSTOP): an acquire returns within the timeout, later ones at once; resumed, Redis decides again", async () => {
    const own = await startRedis();
    extraRedis.push(own);
    const prefix = newPrefix();
    const a = counters({ url: own.url, prefix });
    const spec = [{ key: "sessions", max: 1000 }];
    expect(await a.ready()).toBe(true);
    own.pause();
    try {
      const [r1, t1] = await timed(a, spec);
      const [r2, t2] = await timed(a, spec);
      console.log(`redis hung: first acquire answered after ${t1.toFixed(0)} ms (timeout 300), next in ${t2.toFixed(1)} ms`);
      expect(r1.ok && r2.ok).toBe(true);
      expect(t1).toBeGreaterThanOrEqual(290); // it did wait for Redis, up to the deadline
      expect(t1).toBeLessThan(300 + 2000);
      expect(t2).toBeLessThan(300 + 2000);
      expect(a.state).toMatchObject({ redisUp: false, fallbacks: 2 });
      expect(a.state.errors).toBeGreaterThanOrEqual(1);
    } finally {
      own.resume();
    }
    await waited(() => a.state.redisUp, "a to reconnect");
    const before = a.state.fallbacks;
    await granted(a, spec);
    expect(a.state.fallbacks).toBe(before);
  });

  it('"deny": refuses with reason "unavailable" while Redis is down, grants again once it is back', async () => {
    const own = await startRedis();
    extraRedis.push(own);
    const a = counters({ url: own.url, prefix: newPrefix(), onRedisError: "deny" });
    const spec = [{ key: "sessions", max: 10 }];
    await granted(a, spec);
    await own.kill();
    const [r, t] = await timed(a, spec);
    expect(r).toEqual({ ok: false, key: "redis", max: 0, reason: "unavailable" });
    expect(t).toBeLessThan(300 + 2000);
    expect(a.state.fallbacks).toBe(1);
    // Unlimited specs need no counter, so they need no Redis either.
    expect((await a.acquire([{ key: "sessions", max: 0 }])).ok).toBe(true);
    const restarted = await startRedis(own.port);
    extraRedis.push(restarted);
    await waited(() => a.state.redisUp, "a to reconnect");
    await granted(a, spec);
  });

  it("Redis down from the start: the first acquire waits for the first connect attempt only", async () => {
    const own = await startRedis();
    const url = own.url;
    await own.kill();
    const a = counters({ url, prefix: newPrefix(), onRedisError: "deny" });
    const [r, t] = await timed(a, [{ key: "sessions", max: 10 }]);
    expect(r).toMatchObject({ ok: false, reason: "unavailable" });
    expect(t).toBeLessThan(300 + 2000);
    expect(await a.ready()).toBe(false);
  });
});

describe("RedisCounters daily bytes", () => {
  it("two instances see each other's bytes within a couple of flushes", async () => {
    const prefix = newPrefix();
    const a = counters({ prefix, flushMs: 200 });
    const b = counters({ prefix, flushMs: 200 });
    expect(b.bytesToday("id:alice")).toBe(0); // b now reads this key's cluster total on its flushes
    expect(a.addBytes("id:alice", 1000)).toBe(1000); // addBytes answers the day's total
    expect(a.addBytes("id:alice", 234)).toBe(1234);
    expect(b.addBytes("id:alice", 500)).toBe(500);
    expect(a.bytesToday("id:alice")).toBe(1234); // the local part counts at once
    expect(b.bytesToday("id:alice")).toBe(500);
    const seen = await waited(() => a.bytesToday("id:alice") === 1734 && b.bytesToday("id:alice") === 1734, "both totals to reach 1734");
    console.log(`bytes: both instances saw the cluster total after ${seen.toFixed(0)} ms (flush every 200 ms)`);
    const raw = new RedisClient(redis.url);
    try {
      const day = new Date().toISOString().slice(0, 10);
      expect(await raw.send("GET", [`${prefix}bytes:id:alice:${day}`])).toBe("1734");
      const ttl = Number(await raw.send("TTL", [`${prefix}bytes:id:alice:${day}`]));
      expect(ttl).toBeGreaterThan(2 * 86400 - 60);
      expect(ttl).toBeLessThanOrEqual(2 * 86400);
    } finally {
      raw.close();
    }
  });

  it("at UTC midnight totals start again; bytes of the day before still reach that day's key", async () => {
    const prefix = newPrefix();
    let now = Date.parse("2030-05-01T23:59:59.000Z");
    const a = counters({ prefix, flushMs: 100, now: () => now });
    const raw = new RedisClient(redis.url);
    const total = (day: string) => raw.send("GET", [`${prefix}bytes:k:${day}`]);
    try {
      a.addBytes("k", 10);
      await waited(async () => (await total("2030-05-01")) === "10", "the first flush");
      a.addBytes("k", 7); // not flushed yet when the day ends
      now = Date.parse("2030-05-02T00:00:01.000Z");
      expect(a.bytesToday("k")).toBe(0);
      expect(a.addBytes("k", 5)).toBe(5);
      expect(a.bytesToday("k")).toBe(5);
      await waited(async () => (await total("2030-05-01")) === "17" && (await total("2030-05-02")) === "5", "both days' totals");
    } finally {
      raw.close();
    }
  });

  it("bytes added while Redis is down are kept and reach Redis once it is back", async () => {
    const own = await startRedis();
    extraRedis.push(own);
    const prefix = newPrefix();
    const a = counters({ url: own.url, prefix, flushMs: 100 });
    expect(await a.ready()).toBe(true);
    await own.kill();
    a.addBytes("k", 42);
    await waited(() => !a.state.redisUp, "a to notice Redis is gone");
    expect(a.addBytes("k", 8)).toBe(50);
    expect(a.bytesToday("k")).toBe(50);
    const restarted = await startRedis(own.port);
    extraRedis.push(restarted);
    await waited(() => a.state.redisUp, "a to reconnect");
    const raw = new RedisClient(restarted.url);
    try {
      const day = new Date().toISOString().slice(0, 10);
      await waited(async () => (await raw.send("GET", [`${prefix}bytes:k:${day}`])) === "50", "the bytes to reach Redis");
    } finally {
      raw.close();
    }
    expect(a.bytesToday("k")).toBe(50);
  });
});

describe("RedisCounters housekeeping", () => {
  it("close() gives back every held lease at once", async () => {
    const prefix = newPrefix();
    const a = counters({ prefix });
    const b = counters({ prefix });
    const spec = [{ key: "k", max: 1 }];
    await granted(a, spec);
    expect((await b.acquire(spec)).ok).toBe(false);
    await a.close();
    await granted(b, spec);
  });

  it("lease sets and their keys disappear when every holder is gone", async () => {
    const prefix = newPrefix();
    const a = counters({ prefix, leaseSecs: 2 });
    const lease = await granted(a, [{ key: "gone", max: 3 }]);
    const raw = new RedisClient(redis.url);
    try {
      const pttl = Number(await raw.send("PTTL", [`${prefix}lease:gone`]));
      // The key itself expires soon after its newest lease if nobody renews it.
      expect(pttl).toBeGreaterThan(0);
      expect(pttl).toBeLessThanOrEqual(2000 + 1000);
      lease.release();
      await waited(async () => (await raw.send("EXISTS", [`${prefix}lease:gone`])) === 0, "the emptied set to go");
    } finally {
      raw.close();
    }
  });
});

describe("RedisCounters configuration", () => {
  // No server needed: these are refused before any connection is attempted.
  test("a malformed URL, lease_secs or on_redis_error is refused at construction", () => {
    expect(() => new RedisCounters({ url: "http://127.0.0.1:6379" })).toThrow(/protocol/);
    expect(() => new RedisCounters({ url: "not a url" })).toThrow();
    expect(() => new RedisCounters({ url: "redis://127.0.0.1:1", leaseSecs: 0.5 })).toThrow(RangeError);
    expect(() => new RedisCounters({ url: "redis://127.0.0.1:1", onRedisError: "maybe" as "local" })).toThrow(RangeError);
  });
});
