// Counters shared by every instance through Redis (data model, failure modes:
// docs/cluster-limits.md). Units are leases that expire unless their holder renews them, so the
// share of an instance that dies frees itself within lease_secs. Byte totals are added in memory
// and flushed about once a second; nothing here runs per byte.
//
// Connection handling: Bun's client is created with autoReconnect off, so a lost connection
// fails every command at once instead of queueing it behind reconnect attempts, and every call
// carries our own deadline because a silent server leaves commands pending forever. A lost
// connection is never repaired in place: a probe makes a fresh client every probe interval, and
// only once that client has restored this instance's leases do acquires go to Redis again.
// (Client behaviour this relies on: docs/bun.md#redis-client-pending-commands.)

import { RedisClient } from "bun";
import { createLogger, type Logger } from "../log.ts";
import {
  EMPTY_LEASE,
  isByteCount,
  limitedSpecs,
  UNAVAILABLE_KEY,
  type Acquired,
  type Counters,
  type CountersState,
  type Lease,
  type LimitSpec,
} from "./counters.ts";
import { ByteLedger } from "./byte-ledger.ts";
import { LocalCounters } from "./local-counters.ts";
import { ACQUIRE, ADD_BYTES, RELEASE, RENEW, SCRIPTS, type RedisScript } from "./redis-scripts.ts";
import { withTimeout } from "./timeout.ts";

export type OnRedisError = "local" | "deny";

export interface RedisCountersOptions {
  /** redis://[user:password@]host:port[/db] (never logged: it may hold a password). */
  url: string;
  /** Prefix of every key this module writes. Default "wasmnet:". */
  prefix?: string;
  /** Lifetime of a lease that is not renewed. Default 15. */
  leaseSecs?: number;
  /** Deadline of every Redis call, connecting included. Default 1000. */
  timeoutMs?: number;
  /** What acquire does while Redis does not answer. Default "local". */
  onRedisError?: OnRedisError;
  /** How often byte totals are written and read back. Default 1000. */
  flushMs?: number;
  /** How often a fresh connection is tried during an outage. Default 1000. */
  probeMs?: number;
  /** A key's cluster byte total is read back while it was used within this long. Default 60000. */
  watchMs?: number;
  logger?: Pick<Logger, "warn" | "info">;
  /** Names this instance's leases in Redis. Default: pid and 48 random bits. */
  instanceId?: string;
  /** Clock for the UTC day of byte totals. */
  now?: () => number;
}

/** How long a day's byte total is kept in Redis: long enough for late flushes of yesterday. */
const BYTES_KEEP_SECS = 2 * 24 * 3600;
/** Leases or totals per script call: keeps each call short, Redis runs one script at a time. */
const BATCH = 500;
/** Lease ids to remove once Redis answers again; beyond this they are left to expire. */
const CLEANUP_MAX = 100_000;

export class RedisCounters implements Counters {
  private readonly url: string;
  private readonly prefix: string;
  private readonly leaseMs: number;
  private readonly timeoutMs: number;
  private readonly onRedisError: OnRedisError;
  private readonly flushMs: number;
  private readonly probeMs: number;
  private readonly log: Pick<Logger, "warn" | "info">;
  readonly instanceId: string;

  /** The live connection; null while Redis is unavailable (and before the first connect). */
  private client: RedisClient | null = null;
  private starting: Promise<void> | null;
  /** Date.now() when the current outage began; 0 outside an outage. */
  private outageSince = 0;
  private closed = false;
  private errors = 0;
  private fallbacks = 0;

  /** Every unit this process holds, Redis-granted or not: the limits applied while Redis is away. */
  private readonly local = new LocalCounters();
  /** Redis-granted leases still held: lease id → its lease-set keys. */
  private readonly held = new Map<string, string[]>();
  private seq = 0;
  /** [lease-set key, lease id] pairs to remove from Redis when it answers (released while away). */
  private cleanup: [string, string][] = [];

  /** Byte totals: today's, and days gone by with bytes not yet flushed. */
  private readonly bytes: ByteLedger;

  private renewTimer: ReturnType<typeof setInterval>;
  private flushTimer: ReturnType<typeof setInterval>;
  private probeTimer: ReturnType<typeof setTimeout> | null = null;
  private renewing = false;
  private flushing = false;

  constructor(options: RedisCountersOptions) {
    this.url = options.url;
    this.prefix = options.prefix ?? "wasmnet:";
    this.leaseMs = Math.round((options.leaseSecs ?? 15) * 1000);
    this.timeoutMs = options.timeoutMs ?? 1000;
    this.onRedisError = options.onRedisError ?? "local";
    this.flushMs = options.flushMs ?? 1000;
    this.probeMs = options.probeMs ?? 1000;
    this.log = options.logger ?? createLogger("warn");
    this.bytes = new ByteLedger({ now: options.now ?? Date.now, watchMs: options.watchMs ?? 60_000, keepPastMs: BYTES_KEEP_SECS * 1000 });
    this.instanceId = options.instanceId ?? defaultInstanceId();
    if (!(this.leaseMs >= 1000)) throw new RangeError(`lease_secs must be at least 1, got ${options.leaseSecs}`);
    if (!(this.timeoutMs > 0)) throw new RangeError(`timeout must be positive, got ${this.timeoutMs}`);
    if (this.onRedisError !== "local" && this.onRedisError !== "deny") throw new RangeError(`on_redis_error must be "local" or "deny"`);
    // A malformed URL is a configuration error: throw it here, not later inside a probe. The
    // client connects lazily, so constructing one opens nothing.
    this.newClient().close();

    // Renewing three times per lifetime leaves two chances for a renewal to get through in time.
    this.renewTimer = setInterval(() => void this.renewTick(), Math.max(100, this.leaseMs / 3));
    this.flushTimer = setInterval(() => void this.flush(), this.flushMs);
    this.renewTimer.unref();
    this.flushTimer.unref();
    this.starting = this.establish().then(
      (err) => {
        this.starting = null;
        if (err) this.enterOutage(err);
      },
    );
  }

  /** Resolves once the first connection attempt is over: true if Redis answered. */
  async ready(): Promise<boolean> {
    await this.starting;
    return this.client !== null;
  }

  get state(): CountersState {
    return { backend: "redis", redisUp: this.client !== null, errors: this.errors, fallbacks: this.fallbacks };
  }

  // ---- leases ----

  async acquire(specs: LimitSpec[]): Promise<Acquired> {
    const limited = limitedSpecs(specs);
    if (limited.length === 0) return { ok: true, lease: EMPTY_LEASE };
    if (this.starting) await this.starting;
    const c = this.client;
    if (c && !this.closed) {
      const id = `${this.instanceId}:${(++this.seq).toString(36)}`;
      const keys = limited.map((s) => this.leaseKey(s.key));
      try {
        const full = await this.run(c, ACQUIRE, keys, [String(this.leaseMs), id, ...limited.map((s) => String(s.max))]);
        if (full === 0) return { ok: true, lease: this.redisLease(id, keys, limited) };
        const spec = typeof full === "number" ? limited[full - 1] : undefined;
        if (spec) return { ok: false, key: spec.key, max: spec.max, reason: "limit" };
        this.errors++;
        this.lost(c, new Error(`acquire script answered ${String(full)}`));
      } catch {
        // The script may still run after our deadline: have the unit given back once Redis answers.
      }
      this.forget(keys, id);
    }
    this.fallbacks++;
    if (this.onRedisError === "deny") return { ok: false, key: UNAVAILABLE_KEY, max: 0, reason: "unavailable" };
    // Stays a local lease for its whole life, even if Redis comes back before it is released.
    return this.local.tryAcquire(limited);
  }

  private redisLease(id: string, keys: string[], limited: LimitSpec[]): Lease {
    const local = this.local.hold(limited);
    this.held.set(id, keys);
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        local.release();
        this.held.delete(id);
        const c = this.client;
        if (!c) return this.forget(keys, id);
        this.run(
          c,
          RELEASE,
          keys,
          keys.map(() => id),
        ).catch(() => this.forget(keys, id));
      },
    };
  }

  /** A lease Redis may still count that nobody holds: remove it when Redis answers (it expires anyway). */
  private forget(keys: string[], id: string): void {
    for (const key of keys) if (this.cleanup.length < CLEANUP_MAX) this.cleanup.push([key, id]);
  }

  private async renewTick(): Promise<void> {
    const c = this.client;
    if (!c || this.renewing || this.held.size === 0) return;
    this.renewing = true;
    try {
      await this.renew(c, true);
    } catch {
      // run() has already counted the error and started the outage.
    } finally {
      this.renewing = false;
    }
  }

  /**
   * Extends every held lease on c (live: failures start an outage; else the caller handles them).
   * A lease that expired meanwhile (Redis away or slow for longer than its lifetime) is added back.
   */
  private async renew(c: RedisClient, live: boolean): Promise<void> {
    let keys: string[] = [];
    let ids: string[] = [];
    let readded = 0;
    const send = async () => {
      readded += Number(await this.script(c, live, RENEW, keys, [String(this.leaseMs), ...ids]));
      keys = [];
      ids = [];
    };
    for (const [id, leaseKeys] of this.held) {
      for (const key of leaseKeys) {
        keys.push(key);
        ids.push(id);
      }
      if (keys.length >= BATCH) await send();
    }
    if (keys.length > 0) await send();
    if (readded > 0) {
      this.log.warn("redis leases had expired before renewal and were added back; limits may be exceeded for a while", { count: readded });
    }
  }

  private async removeForgotten(c: RedisClient, live: boolean): Promise<void> {
    while (this.cleanup.length > 0) {
      const batch = this.cleanup.splice(0, BATCH);
      try {
        await this.script(
          c,
          live,
          RELEASE,
          batch.map(([k]) => k),
          batch.map(([, id]) => id),
        );
      } catch (err) {
        this.cleanup.unshift(...batch);
        throw err;
      }
    }
  }

  // ---- bytes ----

  addBytes(key: string, n: number): number {
    return this.bytes.add(key, isByteCount(n) ? n : 0);
  }

  bytesToday(key: string): number {
    return this.bytes.total(key);
  }

  /** Writes the bytes added since the last flush and reads back the cluster totals of keys in use. */
  private async flushBytes(c: RedisClient, live: boolean): Promise<void> {
    const days = this.bytes.takeFlush();
    const all = days.flatMap((d) => d.sent);
    let done = 0;
    try {
      for (const { day, sent } of days) {
        for (let i = 0; i < sent.length; i += BATCH) {
          const batch = sent.slice(i, i + BATCH);
          const redisKeys = batch.map((s) => `${this.prefix}bytes:${s.key}:${day}`);
          const result = await this.script(c, live, ADD_BYTES, redisKeys, [String(BYTES_KEEP_SECS), ...batch.map((s) => String(s.n))]);
          if (!Array.isArray(result) || result.length !== batch.length) throw new Error("add-bytes script answered a malformed reply");
          this.bytes.confirm(batch, result.map(Number));
          done += batch.length;
        }
      }
    } catch (err) {
      // Unconfirmed bytes are sent again later: a flush that did land before its deadline is
      // then counted twice, which errs on the side of the quota.
      this.bytes.restore(all.slice(done));
      throw err;
    }
  }

  private async flush(): Promise<void> {
    const c = this.client;
    // During an outage nothing is flushed, which is where idle entries and past days are dropped.
    if (!c && !this.closed) this.bytes.prune(false);
    if (!c || this.flushing || this.closed) return;
    this.flushing = true;
    try {
      await this.removeForgotten(c, true);
      await this.flushBytes(c, true);
      // Nothing else went out: a ping keeps redisUp honest on an idle instance.
      if (this.client === c && this.held.size === 0 && this.bytes.size === 0) await this.call(c, "PING", []);
    } catch {
      // run() has already counted the error and started the outage.
    } finally {
      this.flushing = false;
    }
  }

  // ---- the connection ----

  /**
   * Connects a fresh client and restores this instance's state on it (leases renewed or added
   * back, forgotten leases removed, bytes flushed) before making it live. Returns the error, or
   * null once live.
   */
  private async establish(): Promise<unknown> {
    let c: RedisClient;
    try {
      c = this.newClient();
    } catch (err) {
      return err;
    }
    try {
      await withTimeout(c.connect(), this.timeoutMs, "redis connect");
      // Loaded up front so EVALSHA does not miss: a miss is retried with EVAL, which would then
      // run behind commands sent after it (a release could land after the next acquire).
      await withTimeout(Promise.all(SCRIPTS.map((s) => c.send("SCRIPT", ["LOAD", s.source]))), this.timeoutMs, "redis script load");
      await this.renew(c, false);
      await this.removeForgotten(c, false);
      await this.flushBytes(c, false);
    } catch (err) {
      c.close();
      return err;
    }
    if (this.closed) {
      c.close();
      return new Error("closed");
    }
    c.onclose = (err) => {
      if (c === this.client) this.errors++;
      this.lost(c, err);
    };
    this.client = c;
    if (this.outageSince) {
      this.log.info("redis available again: cluster limits restored", { outage_ms: Date.now() - this.outageSince, fallbacks: this.fallbacks });
      this.outageSince = 0;
    }
    return null;
  }

  private newClient(): RedisClient {
    return new RedisClient(this.url, { autoReconnect: false, connectionTimeout: this.timeoutMs });
  }

  private enterOutage(err: unknown): void {
    if (this.outageSince || this.closed) return;
    this.outageSince = Date.now();
    this.log.warn(
      this.onRedisError === "deny"
        ? "redis unavailable: refusing new acquires until it answers"
        : "redis unavailable: limits are counted by this process alone until it answers",
      { error: errorText(err), on_redis_error: this.onRedisError },
    );
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    if (this.probeTimer || this.closed) return;
    this.probeTimer = setTimeout(async () => {
      const err = await this.establish();
      this.probeTimer = null;
      if (err) this.scheduleProbe();
    }, this.probeMs);
    this.probeTimer.unref();
  }

  /** Drops a connection that failed (a no-op if it is no longer the live one). */
  private lost(c: RedisClient, err: unknown): void {
    if (c !== this.client) return;
    this.client = null;
    c.onclose = null;
    c.close();
    this.enterOutage(err);
  }

  /** A script on the live connection: a failure counts as an error and starts an outage. */
  private async run(c: RedisClient, script: RedisScript, keys: string[], args: string[]): Promise<unknown> {
    try {
      return await runScript(c, script, keys, args, this.timeoutMs);
    } catch (err) {
      this.errors++;
      this.lost(c, err);
      throw err;
    }
  }

  /** A script on c: on the live connection via run(), on a candidate one without side effects. */
  private script(c: RedisClient, live: boolean, script: RedisScript, keys: string[], args: string[]): Promise<unknown> {
    return live ? this.run(c, script, keys, args) : runScript(c, script, keys, args, this.timeoutMs);
  }

  private async call(c: RedisClient, command: string, args: string[]): Promise<unknown> {
    try {
      return await withTimeout(c.send(command, args), this.timeoutMs, `redis ${command}`);
    } catch (err) {
      this.errors++;
      this.lost(c, err);
      throw err;
    }
  }

  private leaseKey(key: string): string {
    return `${this.prefix}lease:${key}`;
  }

  /** Gives back every lease still held, writes the last bytes, disconnects. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.starting;
    this.closed = true;
    clearInterval(this.renewTimer);
    clearInterval(this.flushTimer);
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
    const c = this.client;
    if (!c) return;
    for (const [id, keys] of this.held) this.forget(keys, id);
    this.held.clear();
    try {
      await this.removeForgotten(c, false);
      await this.flushBytes(c, false);
    } catch {
      // Leases left behind expire within lease_secs; unsent bytes are lost with the process.
    }
    this.client = null;
    c.onclose = null;
    c.close();
  }
}

/** EVALSHA, falling back to EVAL when Redis lost the script (SCRIPT FLUSH since we loaded it). */
async function runScript(c: RedisClient, script: RedisScript, keys: string[], args: string[], timeoutMs: number): Promise<unknown> {
  const call = async () => {
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await c.send("EVALSHA", [script.sha, ...tail]);
    } catch (err) {
      if (!/NOSCRIPT/.test(errorText(err))) throw err;
      return await c.send("EVAL", [script.source, ...tail]);
    }
  };
  return withTimeout(call(), timeoutMs, `redis ${script.name}`);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function defaultInstanceId(): string {
  const random = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${process.pid.toString(36)}.${random}`;
}
