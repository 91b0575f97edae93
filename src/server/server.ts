// A standalone wasmnet server: Bun.serve on one port with the protocol and the HTTP routes.
import type { Server } from "bun";
import { DEFAULT_HOST, DEFAULT_PORT, SHUTDOWN_GRACE_MS } from "../constants.ts";
import type { ServerOptions } from "./options.ts";
import { wasmnet, type Wasmnet } from "./wasmnet.ts";
import type { WsData } from "../adapters/base.ts";

export interface WasmnetServer {
  /** Start listening; resolves once the port is bound. */
  listen(): Promise<WasmnetServer>;
  /** /healthz turns 503, sessions close with 1001, then the port is released. */
  stop(): Promise<void>;
  readonly port: number;
  readonly url: URL;
  readonly handler: Wasmnet;
}

export function createServer(options: ServerOptions = {}): WasmnetServer {
  const handler = wasmnet(options);
  let server: Server<WsData> | null = null;
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
      server = Bun.serve<WsData>({
        hostname: options.hostname ?? DEFAULT_HOST,
        port: options.port ?? DEFAULT_PORT,
        fetch: handler.fetch,
        websocket: handler.websocket,
      });
      handler.ctx.log.info("listening", { host: server.hostname, port: server.port, policy: options.noPolicy ? "none (--no-policy)" : (handler.ctx.policy.source ?? "default") });
      return self;
    },
    async stop() {
      const s = server;
      if (!s) return;
      server = null;
      handler.drain(1001, "server shutting down");
      // server.stop() without force never resolves while a WebSocket is open (docs/bun.md#stopping-the-server-with-open-websockets).
      const graceful = s.stop(false);
      await Promise.race([graceful, Bun.sleep(SHUTDOWN_GRACE_MS)]);
      await s.stop(true);
      handler.ctx.pool?.close();
    },
  };
  return self;
}
