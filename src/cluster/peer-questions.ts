// A worker's /metrics requests for the other workers' series, answered through the supervisor.
// Each question makes the supervisor ask every other worker, so scrapes that arrive while one
// is on its way share its answer instead of fanning out again.
import type { Logger } from "../log.ts";
import type { Series } from "../session/metrics.ts";
import type { WorkerMessage } from "./messages.ts";
import { PEER_WAIT_MS } from "./peer-series.ts";

export class PeerQuestions {
  private next = 0;
  private readonly waiting = new Map<number, (lists: Series[][]) => void>();
  /** The question on its way, shared by every scrape until it is answered. */
  private pending: Promise<Series[][]> | null = null;

  constructor(
    private readonly send: (m: WorkerMessage) => void,
    private readonly log: Pick<Logger, "warn">,
    /** The channel to the supervisor is open. */
    private readonly connected: () => boolean,
  ) {}

  /** The other workers' series; `own` is what this scrape shows of this worker. */
  ask(own: Series[]): Promise<Series[][]> {
    if (!this.connected()) return Promise.resolve([]);
    if (this.pending) {
      // The supervisor must still see what this scrape shows: if this worker dies, its counters
      // are kept from the last series it saw, and a scrape must never show more than that.
      this.send({ t: "shown", own });
      return this.pending;
    }
    const asked = this.question(own);
    this.pending = asked;
    const done = () => {
      if (this.pending === asked) this.pending = null;
    };
    asked.then(done, done);
    return asked;
  }

  private question(own: Series[]): Promise<Series[][]> {
    const q = ++this.next;
    return new Promise((resolve) => {
      // The supervisor answers within PEER_WAIT_MS with whatever it has; past twice that it is
      // not answering at all, and this worker's own numbers are better than none.
      const timer = setTimeout(() => {
        this.waiting.delete(q);
        this.log.warn("metrics: the supervisor did not answer; reporting this worker only", {});
        resolve([]);
      }, 2 * PEER_WAIT_MS);
      this.waiting.set(q, (lists) => {
        clearTimeout(timer);
        resolve(lists);
      });
      this.send({ t: "peers?", q, own });
    });
  }

  answered(q: number, lists: Series[][]): void {
    const done = this.waiting.get(q);
    this.waiting.delete(q);
    done?.(lists);
  }
}
