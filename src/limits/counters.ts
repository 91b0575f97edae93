// The counting layer behind every limit that is "how many at once" (sessions, connections) or
// "how much today" (bytes), kept behind one small interface so a single process can count in
// memory (local-counters.ts) and a cluster can count in Redis (redis-counters.ts) without the
// callers knowing which. See docs/cluster-limits.md.

/** One counter to take a unit of: `max` 0 means unlimited (neither checked nor counted). */
export interface LimitSpec {
  key: string;
  max: number;
}

/** A unit held on one or more counters. `release()` gives it back; calling it again does nothing. */
export interface Lease {
  release(): void;
}

export type Acquired =
  | { ok: true; lease: Lease }
  | { ok: false; key: string; max: number; reason: "limit" | "unavailable" };

/** The key reported when a refusal is Redis's absence rather than a full counter. */
export const UNAVAILABLE_KEY = "redis";

export interface CountersState {
  /** Where the counting happens: this process, Redis, or (workers without Redis) the supervisor. */
  backend: "local" | "redis" | "supervisor";
  /** Redis answers (always false for the local backend). */
  redisUp: boolean;
  /** Redis calls that failed or timed out (health probes during an outage not included). */
  errors: number;
  /** Acquires Redis did not decide: answered from this process's counts, or refused as unavailable. */
  fallbacks: number;
}

export interface Counters {
  /**
   * Take one unit of every key at once, or none: each key's count must be below its max.
   * The same key twice counts once (the smaller max applies).
   */
  acquire(specs: LimitSpec[]): Promise<Acquired>;
  /**
   * Add bytes moved to key's total for the current UTC day, and return that total (as
   * bytesToday would). Synchronous, memory only: it runs for every chunk relayed.
   */
  addBytes(key: string, n: number): number;
  /** Bytes counted today for key, as last known (this process's part included at once). */
  bytesToday(key: string): number;
  readonly state: CountersState;
  close(): Promise<void>;
}

/** A lease that holds nothing (every spec unlimited). */
export const EMPTY_LEASE: Lease = Object.freeze({ release() {} });

/**
 * Drops unlimited specs and merges duplicate keys (keeping the smaller max), so one acquire takes
 * at most one unit per key. Throws on a malformed spec: a bad max is a caller bug, not a refusal.
 */
export function limitedSpecs(specs: readonly LimitSpec[]): LimitSpec[] {
  const byKey = new Map<string, number>();
  for (const { key, max } of specs) {
    if (typeof key !== "string" || key === "") throw new TypeError("limit key must be a non-empty string");
    if (!Number.isSafeInteger(max) || max < 0) throw new RangeError(`limit max for ${key} must be an integer >= 0, got ${max}`);
    if (max === 0) continue;
    const seen = byKey.get(key);
    byKey.set(key, seen === undefined ? max : Math.min(seen, max));
  }
  return [...byKey].map(([key, max]) => ({ key, max }));
}

/** Byte counts are added many times a second: reject garbage without throwing on the hot path. */
export function isByteCount(n: number): boolean {
  return n > 0 && Number.isFinite(n);
}
