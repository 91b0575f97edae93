// When to restart a worker that died: at once-ish the first time, then doubling, so a worker
// that cannot stay up does not spin the CPU; a worker that served for a while earns a fresh start.

export interface BackoffOptions {
  firstMs: number;
  maxMs: number;
  /** A worker that stayed up (listening) this long resets the delay to firstMs. */
  stableMs: number;
}

export const RESTART_BACKOFF: BackoffOptions = { firstMs: 100, maxMs: 10_000, stableMs: 10_000 };

/** One worker slot's restart delays. Pure: the caller passes the times. */
export class RestartBackoff {
  private failures = 0;

  constructor(private readonly o: BackoffOptions = RESTART_BACKOFF) {}

  /**
   * The worker died; `upMs` is how long it had been listening (null: it never listened).
   * Returns how long to wait before starting the next one.
   */
  died(upMs: number | null): number {
    if (upMs !== null && upMs >= this.o.stableMs) this.failures = 0;
    const delay = Math.min(this.o.maxMs, this.o.firstMs * 2 ** this.failures);
    this.failures++;
    return delay;
  }
}
