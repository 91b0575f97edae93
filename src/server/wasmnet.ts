// The mountable part of wasmnet: an upgrade check and a WebSocket handler to put inside any
// Bun.serve (SPEC §9), plus the small HTTP routes createServer serves next to it.
import type { Server, ServerWebSocket, WebSocketHandler } from "bun";
import { HARD_MESSAGE_FACTOR, WS_BACKPRESSURE_LIMIT, WS_IDLE_TIMEOUT_SECS } from "../constants.ts";
import { buildContext, type WasmnetOptions } from "../options.ts";
import { Session } from "../session/session.ts";
import type { SessionContext } from "../session/context.ts";
import { clientScriptResponse } from "./client-asset.ts";
import { clientIp } from "./client-ip.ts";
import { timingSafeEqual } from "node:crypto";
import { decideAddress } from "../policy/decide.ts";
import { handleMessage, WsTransport, type WsData } from "./ws-transport.ts";
import { makeRouter } from "./routes.ts";
import { openWisp } from "./wisp-transport.ts";
import { openWsproxy } from "./wsproxy-transport.ts";

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
  const perIp = new Map<string, number>();
  let draining = false;
  const allowedOrigins = policy.server.allowedOrigins;
  const route = makeRouter(options);
  const wispAuth = policy.wisp.users.size > 0 ? (user: string, password: string) => checkPassword(policy.wisp.users, user, password) : null;

  // A policy carried over from the original wasmnet often denies IPv4 private ranges only.
  if (!options.noPolicy) {
    const open = ["127.0.0.1", "::1", "169.254.169.254", "fd00::1", "10.0.0.1"].filter((a) => decideAddress(policy.rules, null, a, 80).allowed);
    if (open.length > 0) log.warn("the policy lets sessions reach internal addresses; add \"nonpublic\" to [network] deny unless that is intended", { reachable: open });
  }
  if (allowedOrigins === null)
    log.warn("no [server] allowed_origins set: any website a visitor opens may use this server", {});

  function refuse(status: number, why: string): Response {
    log.info("upgrade refused", { status, why });
    return new Response(why + "\n", { status });
  }

  const upgrade = (req: Request, server: Server<WsData>): Response | undefined => {
    if (draining) return refuse(503, "server is shutting down");
    const origin = req.headers.get("origin");
    if (allowedOrigins !== null && (origin === null || !allowedOrigins.includes(origin)))
      return refuse(403, `origin ${origin ?? "(none)"} is not in allowed_origins`);
    const r = route(new URL(req.url).pathname);
    if (r.kind === "bad") return refuse(400, r.why);
    const ip = clientIp(server.requestIP(req)?.address ?? "unknown", req.headers.get("x-forwarded-for"), policy.server.trustedProxies);
    const { maxSessions, maxSessionsPerIp } = policy.limits;
    if (maxSessions > 0 && metrics.sessions >= maxSessions) return refuse(503, `max_sessions (${maxSessions}) reached`);
    if (maxSessionsPerIp > 0 && (perIp.get(ip) ?? 0) >= maxSessionsPerIp)
      return refuse(429, `max_sessions_per_ip (${maxSessionsPerIp}) reached for ${ip}`);
    const data: WsData = { remote: ip, framing: "json", session: null, transport: null, kind: r.kind };
    let headers: Record<string, string> | undefined;
    if (r.kind === "wsproxy") data.target = r.target;
    else if (r.kind === "wisp") {
      // Any offered subprotocol selects Wisp v2 (as wisp-js's server does); echo one back.
      const offered = req.headers.get("sec-websocket-protocol");
      const list = offered ? offered.split(",").map((p) => p.trim()).filter(Boolean) : [];
      data.wispVersion = list.length > 0 ? 2 : 1;
      if (list.length > 0) headers = { "Sec-WebSocket-Protocol": list.includes("wisp-v2") ? "wisp-v2" : list[0]! };
    }
    const ok = server.upgrade(req, { data, headers });
    return ok ? undefined : refuse(426, "expected a WebSocket upgrade");
  };

  const maxMessageBytes = policy.limits.maxMessageBytes;
  const websocket: WebSocketHandler<WsData> = {
    data: {} as WsData,
    maxPayloadLength: maxMessageBytes * HARD_MESSAGE_FACTOR,
    backpressureLimit: WS_BACKPRESSURE_LIMIT,
    closeOnBackpressureLimit: false,
    perMessageDeflate: false,
    // Bun pings at half this, so a live browser is never cut and a vanished one is noticed.
    // (idle_timeout_secs is the per-stream idle timeout, enforced by the session.)
    idleTimeout: WS_IDLE_TIMEOUT_SECS,
    open(ws) {
      sockets.add(ws);
      perIp.set(ws.data.remote, (perIp.get(ws.data.remote) ?? 0) + 1);
      if (ws.data.kind === "wisp") return void openWisp(ws, ctx, { version: ws.data.wispVersion ?? 1, motd: options.wispMotd ?? policy.wisp.motd ?? undefined, passwordAuth: wispAuth });
      if (ws.data.kind === "wsproxy") return void openWsproxy(ws, ctx, ws.data.target!);
      const transport = new WsTransport(ws);
      ws.data.transport = transport;
      ws.data.session = new Session(ctx, transport, ws.data.remote);
    },
    message(ws, message) {
      if (ws.data.adapter) return ws.data.adapter.message(message);
      handleMessage(ws, message, maxMessageBytes);
    },
    drain(ws) {
      ws.data.session?.drained();
    },
    close(ws) {
      sockets.delete(ws);
      const n = (perIp.get(ws.data.remote) ?? 1) - 1;
      if (n > 0) perIp.set(ws.data.remote, n);
      else perIp.delete(ws.data.remote);
      ws.data.adapter?.closing();
      ws.data.session?.destroy();
      ws.data.session = null;
    },
  };

  const fetch = (req: Request, server: Server<WsData>) => {
    const path = new URL(req.url).pathname;
    if (req.method === "GET" && req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      if (path === "/healthz") return new Response(draining ? "draining\n" : "ok\n", { status: draining ? 503 : 200 });
      if (path === "/metrics") return new Response(metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4" } });
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
      return draining;
    },
    drain(code = 1001, reason = "server shutting down") {
      draining = true;
      for (const ws of sockets) ws.close(code, reason);
    },
  };
}

/** Constant-time in the password: compares digests, so length and content leak nothing. */
function checkPassword(users: Map<string, string>, user: string, password: string): boolean {
  const want = users.get(user);
  const digest = (x: string) => new Bun.CryptoHasher("sha256").update(x).digest();
  const ok = timingSafeEqual(digest(want ?? "\0no such user"), digest(password));
  return want !== undefined && ok;
}
