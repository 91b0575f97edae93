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
import { logUncaught, TwoStageDrain, warnNoPolicy } from "./server/serve-process.ts";

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
  logUncaught(log);
  warnNoPolicy(log, options);
  const stop = new TwoStageDrain(log, () => server);
  process.on("SIGINT", () => stop.signal("SIGINT"));
  process.on("SIGTERM", () => stop.signal("SIGTERM"));
  process.on("SIGHUP", () => void server.handler.reload());
}
