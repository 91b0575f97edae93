// A standalone wasmnet server: Bun.serve on one port with the protocol and the HTTP routes.
import type { Server } from "bun";
import { DEFAULT_HOST, DEFAULT_PORT, SHUTDOWN_GRACE_MS } from "../constants.ts";
import type { WsData } from "../adapters/base.ts";
import type { ServerOptions } from "./options.ts";
import { wasmnet, type Wasmnet } from "./wasmnet.ts";

export interface WasmnetServer {
  /** Start listening; resolves once the port is bound (and the token keys are loaded). */
  listen(): Promise<WasmnetServer>;
  /** Close every session now (1001), then release the port. */
  stop(): Promise<void>;
  /**
   * The graceful way down: the listener stays up answering 503 (so load balancers see it), open
   * sessions go on for `secs` (default [server] drain_secs), then the rest get 1001 and the port
   * is released. A call to stop() meanwhile ends it at once.
   */
  drain(secs?: number): Promise<void>;
  readonly port: number;
  readonly url: URL;
  readonly handler: Wasmnet;
}

export function createServer(options: ServerOptions & { reusePort?: boolean } = {}): WasmnetServer {
  const handler = wasmnet(options);
  let server: Server<WsData> | null = null;

  const release = async (s: Server<WsData>) => {
    // server.stop() without force never resolves while a WebSocket is open
    // (docs/bun.md#stopping-the-server-with-open-websockets).
    await Promise.race([s.stop(false), Bun.sleep(SHUTDOWN_GRACE_MS)]);
    await s.stop(true);
    handler.ctx.pool?.close();
    handler.ctx.memory.close();
    await handler.ctx.counters.close();
  };

  const self: WasmnetServer = {
    handler,
    get port() {
      if (!server) throw new Error("wasmnet server is not listening");
      return server.port!;
    },
    get url() {
      if (!server) throw new Error("wasmnet server is not listening");
      return server.url;
    },
    async listen() {
      if (server) return self;
      await handler.ready();
      server = Bun.serve<WsData>({
        hostname: options.hostname ?? DEFAULT_HOST,
        port: options.port ?? DEFAULT_PORT,
        reusePort: options.reusePort ?? false,
        fetch: handler.fetch,
        websocket: handler.websocket,
      });
      const policy = handler.ctx.policies.current;
      handler.ctx.log.info("listening", { host: server.hostname, port: server.port, policy: options.noPolicy ? "none (--no-policy)" : (policy.source ?? "default") });
      return self;
    },
    async stop() {
      const s = server;
      if (!s) return;
      server = null;
      handler.drainNow();
      await release(s);
    },
    async drain(secs) {
      const s = server;
      if (!s) return;
      await handler.drain(secs);
      if (server !== s) return; // stop() ran meanwhile
      server = null;
      await release(s);
    },
  };
  return self;
}
