// What every serving process (the single server, each worker, the supervisor) sets up the same
// way once it is running: the handlers that keep it serving after a stray error, the --no-policy
// warning, and the two-stage drain its stop orders go through.
import type { Logger } from "../log.ts";
import type { ServerOptions } from "./options.ts";
import type { WasmnetServer } from "./server.ts";

/** One bad event must not take every session down with it: log it and keep serving. */
export function logUncaught(log: Pick<Logger, "error">, where = ""): void {
  process.on("uncaughtException", (e) => log.error(`uncaught exception${where}`, { error: String(e), stack: (e as Error).stack }));
  process.on("unhandledRejection", (e) => log.error(`unhandled rejection${where}`, { error: String(e) }));
}

export function warnNoPolicy(log: Pick<Logger, "warn">, options: ServerOptions): void {
  if (options.noPolicy) log.warn("--no-policy: every destination is allowed, including this machine and its network", {});
}

/**
 * Stopping a server: drain() lets open sessions go on for drain_secs and exits 0; now() (a second
 * signal) closes every session at once. Before the server exists either one exits at once.
 */
export class TwoStageDrain {
  private stage: "serving" | "draining" | "closing" = "serving";

  constructor(
    private readonly log: Pick<Logger, "info">,
    private readonly server: () => WasmnetServer | null,
  ) {}

  /** The graceful drain, then exit 0; `fields` say why in the log. Once only. */
  async drain(fields: Record<string, unknown>): Promise<void> {
    if (this.stage !== "serving") return;
    this.stage = "draining";
    const server = this.server();
    if (!server) process.exit(0); // not listening yet: no session to wait for
    this.log.info("shutting down", { ...fields, drain_secs: server.handler.ctx.policies.current.server.drainSecs });
    await server.drain();
    process.exit(0);
  }

  /** Closes every session now (the drain is started first if it was not, so the process still exits). */
  now(fields: Record<string, unknown>): void {
    const server = this.server();
    if (!server) process.exit(0);
    if (this.stage === "serving") void this.drain(fields);
    this.stage = "closing";
    this.log.info("second signal: closing every session now", fields);
    server.handler.drainNow();
  }

  /** A stop signal: the first drains, any later one closes now. */
  signal(name: string): void {
    if (this.stage === "serving") void this.drain({ signal: name });
    else this.now({ signal: name });
  }
}
