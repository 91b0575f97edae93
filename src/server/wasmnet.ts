// The mountable part of wasmnet (docs/architecture.md#layers): an upgrade check and a WebSocket
// handler to put inside any Bun.serve, plus the small HTTP routes createServer serves next to
// it. Which protocol a socket speaks is decided by path at upgrade; from `open` on, the
// socket's adapter (src/adapters/) does the rest.
import type { Server, ServerWebSocket, WebSocketHandler } from "bun";
import { HARD_MESSAGE_FACTOR, WS_BACKPRESSURE_LIMIT, WS_IDLE_TIMEOUT_SECS } from "../constants.ts";
import type { WsData } from "../adapters/base.ts";
import { WasmnetAdapter } from "../adapters/wasmnet.ts";
import { WispAdapter } from "../adapters/wisp.ts";
import { WsproxyAdapter } from "../adapters/wsproxy.ts";
import { pass } from "../net/gate.ts";
import type { SessionContext } from "../session/context.ts";
import { clientScriptResponse } from "./client-asset.ts";
import { Admission } from "./admission.ts";
import { buildContext, type WasmnetOptions } from "./options.ts";
import { makeRouter } from "./routes.ts";
import { checkPassword } from "./wisp-users.ts";

export type { WsData } from "../adapters/base.ts";

export interface Wasmnet {
  /** Upgrade a request to a wasmnet session. Returns undefined when upgraded, else the refusal. */
  upgrade(req: Request, server: Server<WsData>): Response | undefined;
  websocket: WebSocketHandler<WsData>;
  /** Serves /healthz, /metrics and /wasmnet-client.js; upgrades everything else. */
  fetch(req: Request, server: Server<WsData>): Response | undefined | Promise<Response | undefined>;
  readonly ctx: SessionContext;
  /** Open WebSockets. */
  readonly sockets: Set<ServerWebSocket<WsData>>;
  /** Stop accepting sessions (/healthz turns 503) and close open ones with `code`. */
  drain(code?: number, reason?: string): void;
  readonly draining: boolean;
}

export function wasmnet(options: WasmnetOptions = {}): Wasmnet {
  const ctx = buildContext(options);
  const { policy, log, metrics } = ctx;
  const sockets = new Set<ServerWebSocket<WsData>>();
  const route = makeRouter(options);
  const admission = new Admission(policy, log, metrics);
  const users = policy.wisp.users;
  const wispAuth = users.size > 0 ? (user: string, password: string) => checkPassword(users, user, password) : null;
  const wispMotd = options.wispMotd ?? policy.wisp.motd ?? undefined;
  warnAboutPolicy(ctx, options.noPolicy === true);

  const upgrade = (req: Request, server: Server<WsData>): Response | undefined => {
    const path = new URL(req.url).pathname;
    const r = route(path);
    if (r.kind === "bad") return admission.refuse(400, r.why);
    const a = admission.admit(req, server);
    if (!a.ok) return a.response;
    let start: WsData["start"];
    let headers: Record<string, string> | undefined;
    if (r.kind === "wsproxy") start = (ws) => new WsproxyAdapter(ws, ctx, r.target);
    else if (r.kind === "wisp") {
      // Any offered subprotocol selects Wisp v2 (as wisp-js's server does); echo one back.
      const offered = req.headers.get("sec-websocket-protocol");
      const list = offered ? offered.split(",").map((p) => p.trim()).filter(Boolean) : [];
      const version = list.length > 0 ? 2 : 1;
      if (list.length > 0) headers = { "Sec-WebSocket-Protocol": list.includes("wisp-v2") ? "wisp-v2" : list[0]! };
      start = (ws) => new WispAdapter(ws, ctx, { version, motd: wispMotd, passwordAuth: wispAuth });
    } else start = (ws) => new WasmnetAdapter(ws, ctx);
    const data: WsData = { remote: a.remote, start, adapter: null };
    if (server.upgrade(req, { data, headers })) return undefined;
    return admission.refuse(426, "expected a WebSocket upgrade");
  };

  const websocket: WebSocketHandler<WsData> = {
    data: {} as WsData,
    // Bun must hold a message whole before it is seen: above this it closes the socket with 1009.
    maxPayloadLength: policy.limits.maxMessageBytes * HARD_MESSAGE_FACTOR,
    backpressureLimit: WS_BACKPRESSURE_LIMIT,
    closeOnBackpressureLimit: false,
    perMessageDeflate: false,
    // Bun pings at half this, so a live browser is never cut and a vanished one is noticed.
    // (idle_timeout_secs is the per-stream idle timeout, enforced by the session.)
    idleTimeout: WS_IDLE_TIMEOUT_SECS,
    open(ws) {
      sockets.add(ws);
      admission.opened(ws.data.remote);
      ws.data.adapter = ws.data.start(ws);
    },
    message(ws, message) {
      ws.data.adapter?.message(message);
    },
    drain(ws) {
      ws.data.adapter?.drained();
    },
    close(ws) {
      sockets.delete(ws);
      admission.closed(ws.data.remote);
      ws.data.adapter?.closed();
      ws.data.adapter = null;
    },
  };

  const fetch = (req: Request, server: Server<WsData>) => {
    if (req.method === "GET" && req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      const path = new URL(req.url).pathname;
      if (path === "/healthz") return new Response(admission.draining ? "draining\n" : "ok\n", { status: admission.draining ? 503 : 200 });
      if (path === "/metrics") return new Response(metrics.render(ctx.pool), { headers: { "content-type": "text/plain; version=0.0.4" } });
      if (path === "/wasmnet-client.js") return clientScriptResponse();
    }
    return upgrade(req, server);
  };

  return {
    upgrade,
    websocket,
    fetch,
    ctx,
    sockets,
    get draining() {
      return admission.draining;
    },
    drain(code = 1001, reason = "server shutting down") {
      admission.draining = true;
      for (const ws of sockets) ws.close(code, reason);
    },
  };
}

/** Start-up warnings about a policy that leaves the server more open than intended. */
function warnAboutPolicy(ctx: SessionContext, noPolicy: boolean): void {
  const { policy, log } = ctx;
  // A policy carried over from the original wasmnet often denies IPv4 private ranges only.
  if (!noPolicy) {
    const gate = { rules: policy.rules, bind: policy, resolver: ctx.resolver, dnsTimeoutMs: ctx.dnsTimeoutMs };
    const open = ["127.0.0.1", "::1", "169.254.169.254", "fd00::1", "10.0.0.1"].filter((a) => {
      const v = pass(gate, { op: "connect", host: a, port: 80 });
      return !(v instanceof Promise) && v.ok; // literals never need a look-up
    });
    if (open.length > 0) log.warn("the policy lets sessions reach internal addresses; add \"nonpublic\" to [network] deny unless that is intended", { reachable: open });
  }
  if (policy.server.allowedOrigins === null) log.warn("no [server] allowed_origins set: any website a visitor opens may use this server", {});
}
