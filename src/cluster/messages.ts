// What the supervisor and its workers say to each other over the IPC channel Bun opens between
// a parent and a child it spawned (JSON-serialised: plain data only).
import type { LimitSpec } from "../limits/counters.ts";
import type { Series } from "../session/metrics.ts";

/** An acquire's answer as it crosses the channel: the lease is a number the supervisor keeps. */
export type SharedAcquired = { ok: true; lease: number } | { ok: false; key: string; max: number };

/** Worker → supervisor. */
export type WorkerMessage =
  | { t: "listening"; port: number }
  /** The worker could not start (policy, key files, port): the supervisor reports `msg`. */
  | { t: "fatal"; msg: string }
  /** A /metrics request: send me the other workers' series (answered with `peers`, same `q`); `own` is what this worker shows. */
  | { t: "peers?"; q: number; own: Series[] }
  /** A /metrics request that shares a `peers?` on its way: `own` is what this worker shows now. */
  | { t: "shown"; own: Series[] }
  /** The answer to `series?`. */
  | { t: "series"; q: number; series: Series[] }
  /** Take a unit of every spec (workers without Redis count in the supervisor): answered with `acquired`. */
  | { t: "acquire"; q: number; specs: LimitSpec[] }
  | { t: "release"; lease: number }
  /** Bytes moved since the last flush, per key (0: only asking): answered with `totals`. */
  | { t: "bytes"; f: number; adds: [string, number][] };

/** Supervisor → worker. */
export type SupervisorMessage =
  | { t: "peers"; q: number; lists: Series[][] }
  | { t: "series?"; q: number }
  /** The supervisor's own numbers, sent whenever they change. */
  | { t: "cluster"; workers: number; restarts: number }
  /** Start the graceful drain (the first SIGTERM/SIGINT to the supervisor). */
  | { t: "drain" }
  /** End the drain now (the second signal). */
  | { t: "drain-now" }
  /** Read the policy and key files again (SIGHUP to the supervisor). */
  | { t: "reload" }
  /** Start-up failed elsewhere: close everything now and exit. */
  | { t: "stop" }
  | { t: "acquired"; q: number; result: SharedAcquired }
  /** The day's totals of the keys of flush `f`. */
  | { t: "totals"; f: number; totals: [string, number][] };

const WORKER_TYPES = new Set(["listening", "fatal", "peers?", "shown", "series", "acquire", "release", "bytes"]);
const SUPERVISOR_TYPES = new Set(["peers", "series?", "cluster", "drain", "drain-now", "reload", "stop", "acquired", "totals"]);

const typed = (m: unknown): m is { t: string } => typeof m === "object" && m !== null && typeof (m as { t?: unknown }).t === "string";

export const isWorkerMessage = (m: unknown): m is WorkerMessage => typed(m) && WORKER_TYPES.has(m.t);
export const isSupervisorMessage = (m: unknown): m is SupervisorMessage => typed(m) && SUPERVISOR_TYPES.has(m.t);

/** The supervisor's series, as every worker reports them (merged with max: any worker's copy is the value). */
export function clusterSeries(c: { workers: number; restarts: number }): Series[] {
  return [
    { name: "wasmnet_workers", value: c.workers },
    { name: "wasmnet_worker_restarts_total", value: c.restarts },
  ];
}
