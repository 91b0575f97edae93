// The server-wide memory budget ([limits] max_memory_mb), in the spirit of Envoy's overload
// manager: the process's resident memory is sampled, and above the budget the server refuses
// new sessions (503) and new streams (ELIMIT) and stops reading targets, until it is back under.
// Resident memory counts everything the process holds — queues, socket buffers, and the
// incomplete WebSocket messages Bun must keep whole before anyone sees them — which no ledger
// of our own could see.
export interface MemorySample {
  (): number;
}

/** Back under the budget means under this share of it: no flapping around the line. */
const CLEAR_RATIO = 0.95;

export class MemoryWatch {
  private _overloaded = false;
  private last = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly cleared = new Set<() => void>();

  constructor(
    /** The budget in bytes. */
    readonly budget: number,
    private readonly sample: MemorySample = () => process.memoryUsage.rss(),
    intervalMs = 100,
  ) {
    this.check();
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref?.();
  }

  /** Above the budget (as of the latest sample, taken now if `fresh`). */
  overloaded(fresh = false): boolean {
    if (fresh) this.check();
    return this._overloaded;
  }

  get used(): number {
    return this.last;
  }

  /** Runs `fn` once when the server is next back under the budget. Returns a cancel function. */
  onCleared(fn: () => void): () => void {
    this.cleared.add(fn);
    return () => this.cleared.delete(fn);
  }

  check(): void {
    this.last = this.sample();
    if (!this._overloaded && this.last > this.budget) this._overloaded = true;
    else if (this._overloaded && this.last < this.budget * CLEAR_RATIO) {
      this._overloaded = false;
      const waiting = [...this.cleared];
      this.cleared.clear();
      for (const fn of waiting) fn();
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
