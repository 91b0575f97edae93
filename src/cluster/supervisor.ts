// The supervisor of a server with worker processes (`--workers N`): it starts N copies of this
// program on one port, restarts a worker that dies (with backoff) while the others serve, passes
// SIGHUP on to every worker, and on SIGTERM/SIGINT drains them all and exits 0 once they have
// exited. Without Redis it also keeps the limits' counts for all its workers (shared-counters.ts).
// It serves no client itself. See docs/architecture.md#workers.
import type { Subprocess } from "bun";
import { DEFAULT_HOST, DEFAULT_PORT, SHUTDOWN_GRACE_MS } from "../constants.ts";
import type { Logger } from "../log.ts";
import type { PolicyConfig } from "../policy/load.ts";
import { resolvePolicy, type ServerOptions } from "../server/options.ts";
import { logUncaught } from "../server/serve-process.ts";
import { RestartBackoff } from "./backoff.ts";
import { pickFreePort } from "./free-port.ts";
import { isWorkerMessage, type SharedAcquired, type SupervisorMessage, type WorkerMessage } from "./messages.ts";
import { RetiredCounters, SeriesGatherer } from "./peer-series.ts";
import { encodeRole, selfCommand, WORKER_ENV, workerCount } from "./role.ts";
import { CounterBook } from "./shared-counters.ts";

/** Past drain_secs and the server's own grace for closing, a worker still running is killed. */
const EXIT_MARGIN_MS = SHUTDOWN_GRACE_MS + 2000;

interface Worker {
  slot: number;
  proc: Subprocess<"ignore", "inherit", "inherit">;
  pid: number;
  /** When it reported listening (performance.now()), or null while it starts. */
  listeningSince: number | null;
  /** What it said when it could not start. */
  fatal: string | null;
  exited: boolean;
}

/**
 * How many processes the options ask for: `--workers` if given, else the policy's
 * [server] workers. Throws the policy file's error when it has to read it and cannot.
 */
export function workersWanted(options: ServerOptions, setting: number | "auto" | undefined): number {
  return workerCount(setting ?? resolvePolicy(options).server.workers);
}

export async function supervise(options: ServerOptions, count: number, fail: (msg: string) => never): Promise<void> {
  const log = options.logger!;
  let policy: PolicyConfig;
  let port = options.port ?? DEFAULT_PORT;
  const hostname = options.hostname ?? DEFAULT_HOST;
  // Elsewhere SO_REUSEPORT does not spread connections over processes (or does not exist).
  if (process.platform !== "linux") fail(`--workers ${count} needs Linux (the kernel spreads a reusePort port's connections over the workers); use one process per port here`);
  try {
    policy = resolvePolicy(options);
    if (port === 0) port = pickFreePort(hostname);
  } catch (e) {
    fail(e instanceof Error ? e.message : String(e));
  }
  new Supervisor(options, log, policy, count, hostname, port, fail).start();
}

class Supervisor {
  private readonly workers = new Map<number, Worker>(); // by slot: the current process of each
  private readonly backoff: RestartBackoff[];
  private readonly restartTimers = new Set<ReturnType<typeof setTimeout>>();
  private readonly gatherer = new SeriesGatherer();
  private readonly retired = new RetiredCounters();
  /** Without Redis the workers count here (with it, this stays empty). */
  private readonly book = new CounterBook();
  private phase: "starting" | "serving" | "stopping" | "failed" = "starting";
  private restarts = 0;
  private signals = 0;
  private anyFailedExit = false;
  private startFailure: string | null = null;
  private readonly command: string[];

  constructor(
    private readonly options: ServerOptions,
    private readonly log: Logger,
    private policy: PolicyConfig,
    private readonly count: number,
    private readonly hostname: string,
    private readonly port: number,
    private readonly fail: (msg: string) => never,
  ) {
    this.backoff = Array.from({ length: count }, () => new RestartBackoff());
    // The worker runs with exactly this process's arguments; the environment says it is a worker.
    this.command = selfCommand(process.argv.slice(2));
  }

  start(): void {
    logUncaught(this.log, " in the supervisor");
    process.on("SIGINT", () => this.shutdown("SIGINT"));
    process.on("SIGTERM", () => this.shutdown("SIGTERM"));
    process.on("SIGHUP", () => this.reload());
    for (let slot = 0; slot < this.count && this.phase === "starting"; slot++) this.spawn(slot);
  }

  private spawn(slot: number): void {
    let proc: Worker["proc"];
    try {
      proc = Bun.spawn(this.command, {
        env: { ...process.env, [WORKER_ENV]: encodeRole({ slot, count: this.count, port: this.port }) },
        stdio: ["ignore", "inherit", "inherit"],
        serialization: "json",
        ipc: (m) => this.message(w, m),
        onExit: (_p, code, signal) => this.exited(w, code, signal),
      });
    } catch (e) {
      // No process at all (out of processes or memory, the executable gone): like a death before listening.
      const error = e instanceof Error ? e.message : String(e);
      if (this.phase === "starting") return this.startFailed(`cannot start worker ${slot}: ${error}`);
      this.log.error("cannot start a worker", { slot, error });
      return this.restartLater(slot, null);
    }
    const w: Worker = { slot, proc, pid: proc.pid, listeningSince: null, fatal: null, exited: false };
    this.workers.set(slot, w);
    this.log.info("worker started", { slot, pid: w.pid });
  }

  private send(w: Worker, m: SupervisorMessage): void {
    if (w.exited) return;
    try {
      w.proc.send(m);
    } catch {
      // The channel closed as it died; its exit is on the way.
    }
  }

  private live(): Worker[] {
    return [...this.workers.values()].filter((w) => !w.exited);
  }

  private message(w: Worker, m: unknown): void {
    if (!isWorkerMessage(m)) return;
    const msg: WorkerMessage = m;
    switch (msg.t) {
      case "listening":
        w.listeningSince = performance.now();
        if (this.phase === "starting" && this.live().every((x) => x.listeningSince !== null) && this.workers.size === this.count) {
          this.phase = "serving";
          const source = this.options.noPolicy ? "none (--no-policy)" : (this.policy.source ?? "default");
          this.log.info("listening", { host: this.hostname, port: this.port, workers: this.count, pids: this.live().map((x) => x.pid), policy: source });
        }
        this.tellCluster();
        return;
      case "fatal":
        w.fatal = msg.msg;
        return;
      case "peers?": {
        this.retired.saw(w.pid, msg.own);
        const others = this.live().filter((x) => x !== w && x.listeningSince !== null);
        void this.gatherer
          .gather(
            others.map((x) => x.pid),
            (pid, q) => this.send(others.find((x) => x.pid === pid)!, { t: "series?", q }),
          )
          .then(({ lists, missing }) => {
            if (missing.length > 0) this.log.warn("metrics: workers did not answer in time; this scrape leaves them out", { pids: missing });
            const gone = this.retired.series;
            this.send(w, { t: "peers", q: msg.q, lists: gone.length > 0 ? [...lists, gone] : lists });
          });
        return;
      }
      case "shown":
        this.retired.saw(w.pid, msg.own);
        return;
      case "series":
        this.retired.saw(w.pid, msg.series); // even late: remembering more than was shown is safe
        this.gatherer.answer(w.pid, msg.q, msg.series);
        return;
      case "acquire": {
        let result: SharedAcquired;
        try {
          result = this.book.acquire(w.pid, msg.specs);
        } catch (e) {
          this.log.error("a worker asked for malformed limits", { pid: w.pid, error: String(e) });
          result = { ok: false, key: "invalid", max: 0 };
        }
        return this.send(w, { t: "acquired", q: msg.q, result });
      }
      case "release":
        return this.book.release(w.pid, msg.lease);
      case "bytes":
        return this.send(w, { t: "totals", f: msg.f, totals: this.book.addBytes(msg.adds) });
    }
  }

  /** Every worker learns the supervisor's numbers (wasmnet_workers, wasmnet_worker_restarts_total). */
  private tellCluster(): void {
    const workers = this.live().filter((w) => w.listeningSince !== null).length;
    for (const w of this.live()) this.send(w, { t: "cluster", workers, restarts: this.restarts });
  }

  private exited(w: Worker, code: number | null, signal: number | null | string): void {
    w.exited = true;
    this.book.gone(w.pid); // its sessions and connections are gone with it
    this.gatherer.gone(w.pid);
    this.retired.died(w.pid);
    const how = { slot: w.slot, pid: w.pid, code, signal };
    if (this.phase === "stopping" || this.phase === "failed") {
      if (code !== 0) this.anyFailedExit = true;
      this.log.info("worker exited", how);
      return this.exitWhenAllGone();
    }
    if (this.phase === "starting") {
      return this.startFailed(w.fatal ?? `worker ${w.slot} (pid ${w.pid}) exited with ${signal ? `signal ${signal}` : `code ${code}`} before it was listening`);
    }
    // Serving: the others go on; this slot gets a new process after the backoff.
    if (w.fatal) this.log.error("worker failed to start", { ...how, error: w.fatal });
    else this.log.warn("worker exited", how);
    this.tellCluster();
    this.restartLater(w.slot, w.listeningSince === null ? null : performance.now() - w.listeningSince);
  }

  /**
   * Start-up failures are the operator's to fix (a policy or key file, a port in use): report
   * the first and stop, instead of restarting into the same error forever.
   */
  private startFailed(why: string): void {
    this.startFailure = why;
    this.phase = "failed";
    for (const x of this.live()) this.send(x, { t: "stop" });
    this.killLateWorkers(EXIT_MARGIN_MS);
    this.exitWhenAllGone();
  }

  /** A new process for `slot` after its backoff; `upMs`: how long the last one listened (null: never). */
  private restartLater(slot: number, upMs: number | null): void {
    const delay = this.backoff[slot]!.died(upMs);
    this.log.info("restarting worker", { slot, in_ms: delay });
    const timer = setTimeout(() => {
      this.restartTimers.delete(timer);
      if (this.phase !== "serving") return;
      this.restarts++;
      this.spawn(slot);
      this.tellCluster();
    }, delay);
    this.restartTimers.add(timer);
  }

  private exitWhenAllGone(): void {
    if (this.live().length > 0) return;
    if (this.phase === "failed") this.fail(this.startFailure!);
    process.exit(this.anyFailedExit ? 1 : 0);
  }

  /** After `ms`, whoever is still running is killed (a drain that does not end, a stuck worker). */
  private killLateWorkers(ms: number): void {
    setTimeout(() => {
      const late = this.live();
      if (late.length === 0) return;
      this.log.error("workers did not exit in time; killing them", { pids: late.map((w) => w.pid) });
      for (const w of late) w.proc.kill("SIGKILL");
    }, ms).unref();
  }

  private shutdown(signal: string): void {
    if (this.phase === "failed") return;
    if (++this.signals > 1) {
      this.log.info("second signal: every worker closes every session now", { signal });
      for (const w of this.live()) this.send(w, { t: "drain-now" });
      return;
    }
    this.phase = "stopping";
    for (const t of this.restartTimers) clearTimeout(t);
    this.restartTimers.clear();
    const drainSecs = this.policy.server.drainSecs;
    this.log.info("shutting down", { signal, drain_secs: drainSecs, workers: this.live().length });
    for (const w of this.live()) this.send(w, { t: "drain" });
    this.killLateWorkers(drainSecs * 1000 + EXIT_MARGIN_MS);
    this.exitWhenAllGone();
  }

  private reload(): void {
    if (this.phase === "stopping" || this.phase === "failed") return;
    // The supervisor's copy only serves drain_secs; each worker reports its own result.
    try {
      this.policy = resolvePolicy(this.options);
    } catch {}
    this.log.info("reloading every worker", { pids: this.live().map((w) => w.pid) });
    for (const w of this.live()) this.send(w, { t: "reload" });
  }
}
