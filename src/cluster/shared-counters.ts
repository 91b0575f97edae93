// Counting for worker processes without Redis: the supervisor keeps the one set of counters and
// every worker takes and gives back its units over IPC, so max_sessions, max_sessions_per_ip and
// the per-identity limits hold for the whole server instead of once per worker. A worker that
// dies gives back everything it held: the supervisor knows which worker holds which lease.
// With [cluster] redis set the workers count in Redis instead (docs/cluster-limits.md).
import { EMPTY_LEASE, isByteCount, limitedSpecs, UNAVAILABLE_KEY, type Acquired, type Counters, type CountersState, type Lease, type LimitSpec } from "../limits/counters.ts";
import { LocalCounters, type LocalCountersOptions } from "../limits/local-counters.ts";
import { ByteLedger, type SentBytes } from "../limits/byte-ledger.ts";
import type { SharedAcquired, WorkerMessage } from "./messages.ts";

/** The supervisor's side: the counters, and which worker holds which lease. */
export class CounterBook {
  private readonly counters: LocalCounters;
  private readonly leases = new Map<number, { pid: number; lease: Lease }>();
  private nextLease = 0;

  constructor(options: LocalCountersOptions = {}) {
    this.counters = new LocalCounters(options);
  }

  /** Worker `pid` takes one unit of every spec, or none. */
  acquire(pid: number, specs: LimitSpec[]): SharedAcquired {
    const got = this.counters.tryAcquire(specs);
    if (!got.ok) return { ok: false, key: got.key, max: got.max };
    const id = ++this.nextLease;
    this.leases.set(id, { pid, lease: got.lease });
    return { ok: true, lease: id };
  }

  /** Worker `pid` gives lease `id` back (another worker's lease is not its to give). */
  release(pid: number, id: number): void {
    const held = this.leases.get(id);
    if (!held || held.pid !== pid) return;
    this.leases.delete(id);
    held.lease.release();
  }

  /** Worker `pid` is gone: every unit it held comes back. */
  gone(pid: number): void {
    for (const [id, held] of this.leases) {
      if (held.pid !== pid) continue;
      this.leases.delete(id);
      held.lease.release();
    }
  }

  /** Adds each key's bytes (0 just asks) and answers the day's totals of those keys. */
  addBytes(adds: [string, number][]): [string, number][] {
    return adds.map(([key, n]) => {
      this.counters.addBytes(key, n);
      return [key, this.counters.bytesToday(key)];
    });
  }

  /** Units held on `key` (for tests). */
  count(key: string): number {
    return this.counters.count(key);
  }

  /** Leases held, by all workers (for tests). */
  get size(): number {
    return this.leases.size;
  }
}

export interface SupervisorCountersOptions {
  /** An acquire the supervisor has not answered by then is refused as unavailable. Default 1000. */
  timeoutMs?: number;
  /** How often byte counts go to the supervisor (and totals come back). Default 1000. */
  flushMs?: number;
  /**
   * Questions the supervisor has not answered (timed-out ones included: their late grant must
   * still be given back); past this many an acquire is refused as unavailable without asking.
   * Default 4096.
   */
  maxAsked?: number;
  /** A key's total is still fetched this long after it was last used. Default 60 000. */
  watchMs?: number;
  now?: () => number;
}

const UNAVAILABLE: Acquired = Object.freeze({ ok: false, key: UNAVAILABLE_KEY, max: 0, reason: "unavailable" });

/** A worker's side: Counters whose counting happens in the supervisor. */
export class SupervisorCounters implements Counters {
  private readonly timeoutMs: number;
  private readonly maxAsked: number;
  private nextQuestion = 0;
  private readonly asked = new Map<number, { answer: (a: SharedAcquired | null) => void }>();
  /** The supervisor keeps only today: a worker's bytes unsent at midnight are forgotten with their day. */
  private readonly bytes: ByteLedger;
  /** Sent byte counts waiting for their totals, by flush number. */
  private readonly flushes = new Map<number, SentBytes[]>();
  private nextFlush = 0;
  private readonly flushTimer: ReturnType<typeof setInterval>;
  private fallbacks = 0;
  private closed = false;

  constructor(
    /** Sends to the supervisor; false when the channel is closed. */
    private readonly send: (m: WorkerMessage) => boolean,
    options: SupervisorCountersOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 1000;
    this.maxAsked = options.maxAsked ?? 4096;
    this.bytes = new ByteLedger({ now: options.now ?? Date.now, watchMs: options.watchMs ?? 60_000, keepPastMs: 0 });
    this.flushTimer = setInterval(() => this.flush(), options.flushMs ?? 1000);
    this.flushTimer.unref();
  }

  get state(): CountersState {
    return { backend: "supervisor", redisUp: false, errors: 0, fallbacks: this.fallbacks };
  }

  acquire(specs: LimitSpec[]): Promise<Acquired> {
    const limited = limitedSpecs(specs);
    if (limited.length === 0) return Promise.resolve({ ok: true, lease: EMPTY_LEASE });
    // A supervisor this far behind is not answering: asking more would only grow `asked`.
    if (this.asked.size >= this.maxAsked) {
      this.fallbacks++;
      return Promise.resolve(UNAVAILABLE);
    }
    const q = ++this.nextQuestion;
    return new Promise((resolve) => {
      const unavailable = () => {
        this.fallbacks++;
        resolve(UNAVAILABLE);
      };
      // A supervisor that does not answer must not hold a session open: refuse (limits that
      // cannot be counted are not waived), and give back a grant that comes too late.
      const timer = setTimeout(() => {
        this.asked.set(q, { answer: (late) => void (late?.ok && this.send({ t: "release", lease: late.lease })) });
        unavailable();
      }, this.timeoutMs);
      this.asked.set(q, {
        answer: (a) => {
          clearTimeout(timer);
          if (a === null) return unavailable();
          resolve(a.ok ? { ok: true, lease: this.lease(a.lease) } : { ok: false, key: a.key, max: a.max, reason: "limit" });
        },
      });
      if (this.closed || !this.send({ t: "acquire", q, specs: limited })) this.answered(q, null);
    });
  }

  /** The supervisor's answer to acquire `q` (null: it will never come). */
  answered(q: number, a: SharedAcquired | null): void {
    const waiting = this.asked.get(q);
    this.asked.delete(q);
    waiting?.answer(a);
  }

  private lease(id: number): Lease {
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.send({ t: "release", lease: id });
      },
    };
  }

  // ---- bytes ----

  addBytes(key: string, n: number): number {
    return this.bytes.add(key, isByteCount(n) ? n : 0);
  }

  bytesToday(key: string): number {
    return this.bytes.total(key);
  }

  /** Sends what was added since the last flush, and asks the totals of every key in use. */
  flush(): void {
    if (this.closed) return;
    const sent = this.bytes.takeFlush().flatMap((d) => d.sent);
    if (sent.length === 0) return;
    const f = ++this.nextFlush;
    // Not sent: kept as pending, sent with the next flush.
    if (!this.send({ t: "bytes", f, adds: sent.map((s) => [s.key, s.n]) })) return this.bytes.restore(sent);
    this.flushes.set(f, sent);
  }

  /** The supervisor's totals for flush `f`. */
  totalsAnswered(f: number, totals: [string, number][]): void {
    const sent = this.flushes.get(f);
    this.flushes.delete(f);
    if (!sent) return;
    const known = new Map(totals);
    this.bytes.confirm(
      sent,
      sent.map((s) => known.get(s.key)),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    clearInterval(this.flushTimer);
    for (const q of [...this.asked.keys()]) this.answered(q, null);
  }
}
