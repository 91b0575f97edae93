// In-process counters: the whole story for a single process, and what the Redis backend falls
// back to (and mirrors its own leases into) while Redis is unreachable.
// Memory stays bounded by what is live: a counter that drops to zero is deleted, and byte totals
// are dropped when the UTC day rolls over.

import { EMPTY_LEASE, isByteCount, limitedSpecs, type Acquired, type Counters, type CountersState, type Lease, type LimitSpec } from "./counters.ts";
import { DAY_MS, utcDayStart } from "./utc-day.ts";

export interface LocalCountersOptions {
  /** Clock for the UTC day of byte totals (tests move it across midnight). */
  now?: () => number;
}

export class LocalCounters implements Counters {
  private readonly counts = new Map<string, number>();
  private readonly bytes = new Map<string, number>();
  /** The byte totals belong to the UTC day that ends here. */
  private dayEnd = 0;
  private readonly now: () => number;
  readonly state: CountersState = Object.freeze({ backend: "local", redisUp: false, errors: 0, fallbacks: 0 });

  constructor(options: LocalCountersOptions = {}) {
    this.now = options.now ?? Date.now;
  }

  async acquire(specs: LimitSpec[]): Promise<Acquired> {
    return this.tryAcquire(specs);
  }

  /** acquire(), synchronously. */
  tryAcquire(specs: readonly LimitSpec[]): Acquired {
    const limited = limitedSpecs(specs);
    // Check every key before taking any: a refusal takes nothing.
    for (const { key, max } of limited) {
      if ((this.counts.get(key) ?? 0) >= max) return { ok: false, key, max, reason: "limit" };
    }
    return { ok: true, lease: this.take(limited) };
  }

  /**
   * Takes a unit of every limited key without checking the max: for units already granted
   * elsewhere (Redis) that this process must still count against itself if Redis goes away.
   */
  hold(specs: readonly LimitSpec[]): Lease {
    return this.take(limitedSpecs(specs));
  }

  /** Units currently held on key. */
  count(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  private take(limited: readonly LimitSpec[]): Lease {
    if (limited.length === 0) return EMPTY_LEASE;
    const keys = limited.map((s) => s.key);
    for (const key of keys) this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        for (const key of keys) {
          const n = (this.counts.get(key) ?? 0) - 1;
          if (n > 0) this.counts.set(key, n);
          else this.counts.delete(key);
        }
      },
    };
  }

  addBytes(key: string, n: number): number {
    this.rollDay();
    const total = this.bytes.get(key) ?? 0;
    if (!isByteCount(n)) return total;
    this.bytes.set(key, total + n);
    return total + n;
  }

  bytesToday(key: string): number {
    this.rollDay();
    return this.bytes.get(key) ?? 0;
  }

  private rollDay(): void {
    const now = this.now();
    // A clock stepped back across midnight also starts a new day rather than reviving old totals.
    if (now < this.dayEnd && now >= this.dayEnd - DAY_MS) return;
    this.bytes.clear();
    this.dayEnd = utcDayStart(now) + DAY_MS;
  }

  async close(): Promise<void> {}
}
