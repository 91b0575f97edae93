// The supervisor's side of /metrics: a worker asked for the other workers' series; ask each of
// them, and answer with whatever came back within PEER_WAIT_MS (a worker too busy or stuck to
// answer is left out of that one scrape, not waited for).
import { FAMILIES, mergeSeries, type Series } from "../session/metrics.ts";

/** How long the supervisor waits for the workers' answers to one /metrics request. */
export const PEER_WAIT_MS = 1000;

interface Gathering {
  waiting: Set<number>; // pids not answered yet
  lists: Series[][];
  finish: () => void;
}

export class SeriesGatherer {
  private next = 0;
  private readonly open = new Map<number, Gathering>();

  constructor(private readonly waitMs = PEER_WAIT_MS) {}

  /**
   * Ask every worker in `from` (`ask(pid, q)` sends the question; it may throw if the worker just
   * died). Resolves with the lists that came back in time and the pids that did not answer.
   */
  gather(from: number[], ask: (pid: number, q: number) => void): Promise<{ lists: Series[][]; missing: number[] }> {
    if (from.length === 0) return Promise.resolve({ lists: [], missing: [] });
    const q = ++this.next;
    return new Promise((resolve) => {
      const g: Gathering = {
        waiting: new Set(from),
        lists: [],
        finish: () => {
          clearTimeout(timer);
          this.open.delete(q);
          resolve({ lists: g.lists, missing: [...g.waiting] });
        },
      };
      const timer = setTimeout(g.finish, this.waitMs);
      this.open.set(q, g);
      for (const pid of from) {
        try {
          ask(pid, q);
        } catch {
          // Gone between the list and the question: its exit is handled elsewhere.
          g.waiting.delete(pid);
        }
      }
      if (g.waiting.size === 0) g.finish();
    });
  }

  /** A worker's answer to question `q`. */
  answer(pid: number, q: number, series: Series[]): void {
    const g = this.open.get(q);
    if (!g || !g.waiting.delete(pid)) return;
    g.lists.push(series);
    if (g.waiting.size === 0) g.finish();
  }

  /** A worker died: no answer will come from it. */
  gone(pid: number): void {
    for (const g of [...this.open.values()]) if (g.waiting.delete(pid) && g.waiting.size === 0) g.finish();
  }
}

/**
 * The counts of workers that died. A restarted worker counts from 0 again, so a total summed
 * over the live workers would fall — and Prometheus reads a counter that falls as a reset, and
 * its rate() as a jump by the whole remaining total. So the supervisor remembers the latest
 * series it has passed on for each worker (every value a scrape showed went through it, the
 * answering worker's own included) and, when a worker dies, keeps its counters in the totals.
 * Gauges (open sessions, sockets, memory) leave with the worker.
 */
export class RetiredCounters {
  private readonly seen = new Map<number, Series[]>();
  private retired: Series[] = [];

  /** The latest series of worker `pid` that a scrape may show. */
  saw(pid: number, series: Series[]): void {
    this.seen.set(pid, series);
  }

  died(pid: number): void {
    const last = this.seen.get(pid);
    this.seen.delete(pid);
    if (!last) return;
    const counters = last.filter((s) => FAMILIES[s.name].type === "counter" && FAMILIES[s.name].merge === "sum");
    this.retired = mergeSeries([this.retired, counters]);
  }

  /** The dead workers' counters, summed: one more list to merge into a scrape. */
  get series(): Series[] {
    return this.retired;
  }
}
