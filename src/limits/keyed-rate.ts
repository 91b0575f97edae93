// A small rate limit per key (a client address): `perSec` events a second with bursts of
// `burst`, for requests that cost the server a round trip but hold nothing afterwards (the plain
// GET admission checks). Memory is bounded: past `maxKeys` the least recently seen key goes, and
// a key that comes back starts with a full burst again.

export class KeyedRate {
  /** Map order is least recently seen first: a key seen again is moved to the end. */
  private readonly entries = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perSec: number,
    private readonly burst: number,
    private readonly maxKeys = 10_000,
  ) {
    if (!(perSec > 0) || !(burst >= 1) || !(maxKeys >= 1)) throw new RangeError("KeyedRate needs perSec > 0, burst >= 1 and maxKeys >= 1");
  }

  /** One event for `key`: true if it is within the rate (and counted), false if over it. */
  allow(key: string, now: number = performance.now()): boolean {
    let e = this.entries.get(key);
    if (e) {
      this.entries.delete(key);
      // A clock that steps back neither mints nor destroys tokens.
      e.tokens = Math.min(this.burst, e.tokens + (Math.max(0, now - e.at) / 1000) * this.perSec);
      e.at = Math.max(e.at, now);
    } else {
      if (this.entries.size >= this.maxKeys) this.entries.delete(this.entries.keys().next().value!);
      e = { tokens: this.burst, at: now };
    }
    this.entries.set(key, e);
    if (e.tokens < 1) return false;
    e.tokens -= 1;
    return true;
  }

  get size(): number {
    return this.entries.size;
  }
}
