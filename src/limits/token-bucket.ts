// Bandwidth limits (docs/protocol.md#bandwidth): max_bandwidth_mbps × 125 000 bytes/s,
// burst of one second. Time is passed in so the arithmetic is testable without
// sleeping. The bucket may go into debt: a large write is never split or
// refused, the caller just waits out the debt, which is what "slow down, never
// drop" needs.

export const BYTES_PER_SEC_PER_MBPS = 125_000;

export class TokenBucket {
  readonly rate: number; // bytes per second; 0 = unlimited
  readonly burst: number;
  private tokens: number;
  private last: number;

  constructor(ratePerSec: number, burst: number = ratePerSec, now: number = performance.now()) {
    if (!(ratePerSec >= 0) || !Number.isFinite(ratePerSec)) throw new RangeError(`bad rate ${ratePerSec}`);
    if (!(burst >= 0) || !Number.isFinite(burst)) throw new RangeError(`bad burst ${burst}`);
    this.rate = ratePerSec;
    this.burst = burst;
    this.tokens = burst;
    this.last = now;
  }

  static forMbps(mbps: number, now: number = performance.now()): TokenBucket {
    const rate = mbps * BYTES_PER_SEC_PER_MBPS;
    return new TokenBucket(rate, rate, now);
  }

  get unlimited(): boolean {
    return this.rate === 0;
  }

  private refill(now: number): void {
    // A clock that steps backwards must not mint or destroy tokens.
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
      this.last = now;
    }
  }

  /** Tokens (bytes) available now; negative while in debt; Infinity if unlimited. */
  available(now: number): number {
    if (this.unlimited) return Infinity;
    this.refill(now);
    return this.tokens;
  }

  /** Always consumes n; returns ms to wait until the bucket is non-negative again (0 = go on). */
  consume(n: number, now: number): number {
    if (this.unlimited) return 0;
    this.refill(now);
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : (-this.tokens * 1000) / this.rate;
  }

  /** Ms until the bucket is non-negative, without consuming anything. */
  delay(now: number): number {
    if (this.unlimited) return 0;
    this.refill(now);
    return this.tokens >= 0 ? 0 : (-this.tokens * 1000) / this.rate;
  }

  /**
   * Pays n in full if the bucket holds that much now, else spends nothing. For what cannot be
   * slowed down or split (a UDP datagram): spending a partial payment on something that is then
   * dropped would starve the next one, and an over-limit source would get almost nothing.
   */
  tryTake(n: number, now: number): boolean {
    if (this.unlimited) return true;
    this.refill(now);
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
}
