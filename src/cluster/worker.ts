// A worker process: one wasmnet server on the port the supervisor chose (reusePort, so the
// kernel spreads new connections over the workers), with its share of the memory budget. It
// takes its orders — drain, reload — from the supervisor over IPC, and answers the
// supervisor's questions about its metric series.
import { SHUTDOWN_GRACE_MS } from "../constants.ts";
import type { ServerOptions } from "../server/options.ts";
import { createServer, type WasmnetServer } from "../server/server.ts";
import { logUncaught, TwoStageDrain, warnNoPolicy } from "../server/serve-process.ts";
import { clusterSeries, isSupervisorMessage, type WorkerMessage } from "./messages.ts";
import { PeerQuestions } from "./peer-questions.ts";
import { SupervisorCounters } from "./shared-counters.ts";
import type { WorkerRole } from "./role.ts";
import { workerLogger } from "./worker-log.ts";

export async function runWorker(options: ServerOptions, role: WorkerRole): Promise<void> {
  const log = workerLogger(options.logger!, process.pid);
  const send = (m: WorkerMessage, then?: () => void): void => {
    if (!process.connected) return then?.();
    process.send!(m, undefined, undefined, () => then?.());
  };
  let cluster = { workers: 0, restarts: 0 };
  const peers = new PeerQuestions(send, log, () => process.connected);
  let server: WasmnetServer | null = null;
  // Without Redis, the supervisor counts the limits for every worker (made only if the policy names no Redis).
  let counters: SupervisorCounters | null = null;
  const sendNow = (m: WorkerMessage): boolean => {
    if (!process.connected) return false;
    process.send!(m);
    return true;
  };
  const stop = new TwoStageDrain(log, () => server);
  const drain = (why: string) => stop.drain({ reason: why });
  const drainNow = () => stop.now({ reason: "second signal" });

  // Orders sent before this runs are not lost: Bun holds IPC messages until a listener exists.
  process.on("message", (m: unknown) => {
    if (!isSupervisorMessage(m)) return;
    switch (m.t) {
      case "peers":
        return peers.answered(m.q, m.lists);
      case "series?":
        return send({ t: "series", q: m.q, series: server ? server.handler.series() : [] });
      case "cluster":
        cluster = { workers: m.workers, restarts: m.restarts };
        return;
      case "drain":
        return void drain("the supervisor was signalled");
      case "drain-now":
        return drainNow();
      case "acquired":
        return counters?.answered(m.q, m.result);
      case "totals":
        return counters?.totalsAnswered(m.f, m.totals);
      case "reload":
        if (server) void server.handler.reload();
        return;
      case "stop":
        if (!server) process.exit(0);
        void server.stop().then(() => process.exit(0));
        return;
    }
  });
  // No supervisor, no one to restart us or to tell us to stop: drain rather than hold a share
  // of the port forever (with reusePort the kernel would keep sending clients here).
  process.on("disconnect", () => {
    log.warn("the supervisor is gone: draining", {});
    void drain("the supervisor is gone");
  });
  // Signals are the supervisor's to handle: a terminal's Ctrl-C or a service manager's stop
  // reaches the whole process group, and obeying both it and the supervisor would turn one
  // signal into two (the second ending the drain at once).
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => log.debug("signal left to the supervisor", { signal }));

  try {
    server = createServer({
      ...options,
      logger: log,
      port: role.port,
      reusePort: true,
      memoryShare: 1 / role.count,
      peerMetrics: (own) => peers.ask(own),
      extraMetrics: () => clusterSeries(cluster),
      sharedCounters: () => (counters = new SupervisorCounters(sendNow)),
    });
    await server.listen();
  } catch (e) {
    // Told once, by the supervisor (which exits 2 when this happens at start-up).
    const msg = e instanceof Error ? e.message : String(e);
    const exit = () => process.exit(2);
    setTimeout(exit, SHUTDOWN_GRACE_MS).unref();
    return send({ t: "fatal", msg }, exit);
  }
  logUncaught(log);
  warnNoPolicy(log, options);
  send({ t: "listening", port: server.port });
}
