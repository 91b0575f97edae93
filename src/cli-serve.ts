// Running the server from the command line: start it, then live with signals.
//   SIGTERM / SIGINT: drain (the listener stays up answering 503, open sessions go on for
//     --drain-secs, then 1001) and exit 0; a second signal ends the drain at once.
//   SIGHUP: reload the policy file and the key files (an invalid file keeps the running policy).
// With --workers N (N > 1) this process is the supervisor of N workers, each of which runs this
// same function again as a worker (src/cluster/).
import { supervise, workersWanted } from "./cluster/supervisor.ts";
import { workerRole } from "./cluster/role.ts";
import { runWorker } from "./cluster/worker.ts";
import type { ServerOptions } from "./server/options.ts";
import { createServer, type WasmnetServer } from "./server/server.ts";

export interface ServeControl {
  /** Worker processes: N, "auto", or undefined for the policy's [server] workers. */
  workers?: number | "auto";
  fail: (msg: string) => never;
}

export async function serve(options: ServerOptions, control: ServeControl): Promise<void> {
  const role = workerRole();
  if (role) return runWorker(options, role);
  let workers = 1;
  try {
    workers = workersWanted(options, control.workers);
  } catch (e) {
    control.fail(e instanceof Error ? e.message : String(e));
  }
  if (workers > 1) return supervise(options, workers, control.fail);
  const log = options.logger!;
  let server: WasmnetServer;
  try {
    server = createServer(options);
    await server.listen();
  } catch (e) {
    control.fail(e instanceof Error ? e.message : String(e));
  }
  // One bad event must not take every session down with it: log it and keep serving.
  process.on("uncaughtException", (e) => log.error("uncaught exception", { error: String(e), stack: (e as Error).stack }));
  process.on("unhandledRejection", (e) => log.error("unhandled rejection", { error: String(e) }));
  if (options.noPolicy) log.warn("--no-policy: every destination is allowed, including this machine and its network", {});
  let signals = 0;
  const stop = async (signal: string) => {
    if (++signals > 1) {
      log.info("second signal: closing every session now", { signal });
      return server.handler.drainNow();
    }
    log.info("shutting down", { signal, drain_secs: server.handler.ctx.policies.current.server.drainSecs });
    await server.drain();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGHUP", () => void server.handler.reload());
}
