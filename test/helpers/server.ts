// Start a wasmnet server on loopback for a test file.
import { createServer, type WasmnetServer } from "../../src/index.ts";
import { silentLogger } from "../../src/log.ts";
import type { ServerOptions } from "../../src/server/options.ts";

export async function startServer(opts: ServerOptions = {}): Promise<WasmnetServer & { wsUrl: string }> {
  const srv = await createServer({ hostname: "127.0.0.1", port: 0, logger: silentLogger, ...opts }).listen();
  return Object.assign(srv, { wsUrl: `ws://127.0.0.1:${srv.port}/` });
}
