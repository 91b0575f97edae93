// Daily byte totals of a process whose counting happens elsewhere (Redis, or the supervisor of
// the workers): bytes are added here at once and sent in batches, so each key's total moves
// through three parts — pending (added since the last flush), inflight (sent, not confirmed)
// and known (the shared total as last confirmed, which includes every confirmed flush).
// A flush holds its totals by reference: an answer that arrives after UTC midnight updates the
// day it was sent for, never the new day's entry of the same key.
import { DAY_MS, utcDayName, utcDayStart } from "./utc-day.ts";

interface ByteTotal {
  /** The shared total as last confirmed (this process's confirmed flushes included). */
  known: number;
  /** Sent, not confirmed yet. */
  inflight: number;
  /** Added here since the last flush. */
  pending: number;
  /** Last add or total. */
  touched: number;
}

/** Bytes sent for one key in one flush; `total` is the entry they were taken from. */
export interface SentBytes {
  readonly key: string;
  readonly n: number;
  readonly total: ByteTotal;
}

/** One day's part of a flush: `day` is its "yyyy-mm-dd". */
export interface DayFlush {
  readonly day: string;
  readonly sent: SentBytes[];
}

interface Day {
  /** Start of the UTC day, ms since the epoch. */
  start: number;
  totals: Map<string, ByteTotal>;
}

export interface ByteLedgerOptions {
  now: () => number;
  /** A key's shared total is still asked for this long after its last add or total. */
  watchMs: number;
  /**
   * How long after its end a past day's unsent bytes are still flushed (for its own day's
   * total); 0 forgets them at midnight (the other side keeps only today).
   */
  keepPastMs: number;
}

export class ByteLedger {
  private today: Day = { start: 0, totals: new Map() };
  /** Days gone by with bytes still to send. */
  private past: Day[] = [];

  constructor(private readonly options: ByteLedgerOptions) {}

  /** Adds n bytes (a count already checked; 0 adds nothing) to key's day; returns the day's total. */
  add(key: string, n: number): number {
    const t = this.entry(key, this.options.now());
    t.pending += n;
    return t.known + t.inflight + t.pending;
  }

  /** Key's total for the current UTC day, this process's unconfirmed part included. */
  total(key: string): number {
    const t = this.entry(key, this.options.now());
    return t.known + t.inflight + t.pending;
  }

  /** Keys counted today (idle ones are pruned at each flush). */
  get size(): number {
    return this.today.totals.size;
  }

  /**
   * What to send now: every past day's unsent bytes, then today's keys in use (pending bytes, or
   * used within watchMs: sending 0 asks for the shared total). Their pending bytes become
   * inflight; answer with confirm() or restore(). Idle entries are dropped on the way.
   */
  takeFlush(): DayFlush[] {
    const now = this.prune(true);
    const out: DayFlush[] = [];
    for (const d of this.past) {
      const sent: SentBytes[] = [];
      for (const [key, t] of d.totals) if (t.pending > 0) sent.push(take(key, t));
      if (sent.length > 0) out.push({ day: utcDayName(d.start), sent });
    }
    const sent: SentBytes[] = [];
    for (const [key, t] of this.today.totals) if (this.inUse(t, now)) sent.push(take(key, t));
    if (sent.length > 0) out.push({ day: utcDayName(this.today.start), sent });
    return out;
  }

  /**
   * Drops what no flush needs: past days beyond keepPastMs, past entries with nothing to send,
   * and today's idle entries with nothing on the way. With `forgetKnown` false (nothing can be
   * flushed: the other side is away) an idle entry that holds a known total is kept, since it
   * is then this process's only record of that total. Returns the time it pruned at.
   */
  prune(forgetKnown: boolean): number {
    const now = this.options.now();
    this.roll(now);
    this.past = this.past.filter((d) => d.start + DAY_MS + this.options.keepPastMs > now);
    for (const d of this.past) for (const [key, t] of d.totals) if (!unsent(t)) d.totals.delete(key);
    this.past = this.past.filter((d) => d.totals.size > 0);
    for (const [key, t] of this.today.totals) {
      if (!this.inUse(t, now) && t.inflight === 0 && (forgetKnown || t.known === 0)) this.today.totals.delete(key);
    }
    return now;
  }

  private inUse(t: ByteTotal, now: number): boolean {
    return t.pending > 0 || now - t.touched < this.options.watchMs;
  }

  /** `sent` landed; `totals[i]` is the shared total after sent[i] (undefined: not answered). */
  confirm(sent: readonly SentBytes[], totals: readonly (number | undefined)[]): void {
    sent.forEach((s, i) => {
      s.total.inflight -= s.n;
      const total = totals[i];
      // The total includes this flush, not later ones still on their way (kept in inflight).
      if (total !== undefined && Number.isFinite(total)) s.total.known = total;
    });
  }

  /** `sent` did not land (or may not have): sent again with the next flush. */
  restore(sent: readonly SentBytes[]): void {
    for (const s of sent) {
      s.total.inflight -= s.n;
      s.total.pending += s.n;
    }
  }

  private entry(key: string, now: number): ByteTotal {
    this.roll(now);
    let t = this.today.totals.get(key);
    if (!t) this.today.totals.set(key, (t = { known: 0, inflight: 0, pending: 0, touched: now }));
    t.touched = now;
    return t;
  }

  private roll(now: number): void {
    const start = this.today.start;
    // A clock stepped back across midnight also starts a new day rather than reviving old totals.
    if (now >= start && now < start + DAY_MS) return;
    // Of the day gone by only bytes still to send matter (their day's total in the other side).
    if (this.options.keepPastMs > 0) {
      for (const [key, t] of this.today.totals) if (!unsent(t)) this.today.totals.delete(key);
      if (this.today.totals.size > 0) this.past.push(this.today);
    }
    this.today = { start: utcDayStart(now), totals: new Map() };
  }
}

/** Bytes not yet confirmed: pending, or sent and unanswered. */
function unsent(t: ByteTotal): boolean {
  return t.pending > 0 || t.inflight > 0;
}

function take(key: string, t: ByteTotal): SentBytes {
  const n = Math.round(t.pending);
  t.pending -= n;
  t.inflight += n;
  return { key, n, total: t };
}
