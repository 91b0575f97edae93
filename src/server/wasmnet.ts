// The mountable part of wasmnet (docs/architecture.md#layers): an upgrade check and a WebSocket
// handler to put inside any Bun.serve, plus the small HTTP routes createServer serves next to
// it. Which protocol a socket speaks is decided by path at upgrade; from `open` on, the
// socket's adapter (src/adapters/) does the rest.
import type { Server, ServerWebSocket, WebSocketHandler } from "bun";
import { HARD_MESSAGE_MARGIN, WS_BACKPRESSURE_LIMIT, WS_IDLE_TIMEOUT_SECS } from "../constants.ts";
import type { WsData } from "../adapters/base.ts";
import { WasmnetAdapter } from "../adapters/wasmnet.ts";
import { PosixAdapter } from "../adapters/posix.ts";
import { WispAdapter, type WispConfig } from "../adapters/wisp.ts";
import { WsproxyAdapter } from "../adapters/wsproxy.ts";
import { pass } from "../net/gate.ts";
import type { SessionContext } from "../session/context.ts";
import { mergeSeries, renderSeries, type Series } from "../session/metrics.ts";
import { Admission } from "./admission.ts";
import { clientScriptResponse } from "./client-asset.ts";
import { buildContext, type WasmnetOptions } from "./options.ts";
import type { PolicyStore, ReloadResult } from "./policy-store.ts";
import { makeRouter, type WsRoute } from "./routes.ts";
import { checkKey, checkPassword, wispAuthMethods } from "./wisp-users.ts";

export type { WsData } from "../adapters/base.ts";

export interface Wasmnet {
  /** Upgrade a request to a session. Resolves to undefined when upgraded, else the refusal. */
  upgrade(req: Request, server: Server<WsData>): Promise<Response | undefined>;
  websocket: WebSocketHandler<WsData>;
  /** Serves /healthz, /metrics and /wasmnet-client.js; upgrades everything else. */
  fetch(req: Request, server: Server<WsData>): Response | undefined | Promise<Response | undefined>;
  readonly ctx: SessionContext & { policies: PolicyStore };
  /** Open WebSockets. */
  readonly sockets: Set<ServerWebSocket<WsData>>;
  /** Resolves once the token keys are loaded; rejects if they cannot be (start-up errors). */
  ready(): Promise<void>;
  /**
   * Drain: new sessions are refused (503, and /healthz answers 503 so a load balancer moves
   * traffic away), open sessions go on for `secs` (default [server] drain_secs), then the rest
   * are closed with 1001. Resolves when every session is gone. Called again, it returns the
   * first call's promise (the first `secs` holds).
   */
  drain(secs?: number): Promise<void>;
  /** End a drain now (or start one that ends now): every session closed with 1001. */
  drainNow(): void;
  readonly draining: boolean;
  /** Read the policy file and the key files again; on error the running ones stay. */
  reload(): Promise<ReloadResult>;
  /** This process's metric series (workers report them to each other). */
  series(): Series[];
}

export function wasmnet(options: WasmnetOptions = {}): Wasmnet {
  const ctx = buildContext(options);
  const { log, metrics, policies } = ctx;
  const sockets = new Set<ServerWebSocket<WsData>>();
  const route = makeRouter(options);
  const admission = new Admission(ctx);
  // Checked against the users of the running policy: a reload applies to the next login.
  const wispPassword = (user: string, password: string) => checkPassword(policies.current.wisp.users, user, password);
  const wispKey: NonNullable<WispConfig["keyAuth"]> = (answer, challenge) => checkKey(policies.current.wisp.users, answer, challenge);
  warnAboutPolicy(ctx, options.noPolicy === true);
  let drained: (() => void) | null = null;
  // One drain per handler: a second call returns the first one's promise (its own would never settle).
  let draining: Promise<void> | null = null;

  const upgrade = async (req: Request, server: Server<WsData>): Promise<Response | undefined> => {
    const r = route(new URL(req.url).pathname);
    if (r.kind === "bad") return admission.refuse(400, r.why, req);
    const isUpgrade = req.headers.get("upgrade")?.toLowerCase() === "websocket";
    // A handshake server.upgrade() would turn down is refused before admission takes a session unit.
    const problem = isUpgrade ? handshakeProblem(req) : null;
    if (problem !== null) return admission.refuse(problem.status, problem.why, req, problem.status === 426 ? { "sec-websocket-version": "13" } : undefined);
    const a = await admission.admit(req, server, isUpgrade);
    if (!a.ok) return a.response;
    if (!isUpgrade) return admission.refuse(426, "expected a WebSocket upgrade", req);
    const chosen = selectProtocol(r, a.protocols, req.headers.has("sec-websocket-protocol"));
    if (chosen.refuse) {
      a.lease.release();
      return admission.refuse(400, chosen.refuse, req);
    }
    const session = { remote: a.remote, identity: a.identity, lease: a.lease };
    const { wisp } = policies.current;
    let start: WsData["start"];
    if (r.kind === "wsproxy") start = (ws) => new WsproxyAdapter(ws, ctx, r.target, session);
    else if (r.kind === "wisp") {
      const auth = wispAuthMethods(wisp.users);
      const config: WispConfig = {
        version: a.protocols.length > 0 ? 2 : 1,
        motd: options.wispMotd ?? wisp.motd,
        passwordAuth: auth.password ? wispPassword : null,
        keyAuth: auth.key ? wispKey : null,
      };
      start = (ws) => new WispAdapter(ws, ctx, config, session);
    }
    else if (r.kind === "posix") start = (ws) => new PosixAdapter(ws, ctx, session);
    else start = (ws) => new WasmnetAdapter(ws, ctx, session);
    const data: WsData = { remote: a.remote, start, adapter: null };
    const headers = chosen.protocol === null ? undefined : { "Sec-WebSocket-Protocol": chosen.protocol };
    if (server.upgrade(req, { data, headers })) return undefined;
    a.lease.release();
    return admission.refuse(426, "expected a WebSocket upgrade", req);
  };

  const websocket: WebSocketHandler<WsData> = {
    data: {} as WsData,
    // Bun must hold a message whole before anyone sees it: above this it closes the socket (1009).
    // Just over max_message_bytes, so an incomplete message is as small a lever as the protocol
    // allows; between the two, the message is refused with ELIMIT and the session goes on.
    maxPayloadLength: policies.current.limits.maxMessageBytes + HARD_MESSAGE_MARGIN,
    backpressureLimit: WS_BACKPRESSURE_LIMIT,
    closeOnBackpressureLimit: false,
    perMessageDeflate: false,
    // Bun pings at half this, so a live browser is never cut and a vanished one is noticed.
    // (idle_timeout_secs is the per-stream idle timeout, enforced by the session.)
    idleTimeout: WS_IDLE_TIMEOUT_SECS,
    open(ws) {
      sockets.add(ws);
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
      ws.data.adapter?.closed();
      ws.data.adapter = null;
      if (sockets.size === 0) drained?.();
    },
  };

  const series = (): Series[] => {
    const pool = ctx.pool;
    const state = ctx.counters.state;
    return metrics.series([
      { name: "wasmnet_pool_total", labels: { result: "hit" }, value: pool?.hits ?? 0 },
      { name: "wasmnet_pool_total", labels: { result: "miss" }, value: pool?.misses ?? 0 },
      { name: "wasmnet_memory_bytes", value: ctx.memory.used },
      { name: "wasmnet_memory_budget_bytes", value: ctx.memory.budget },
      { name: "wasmnet_overloaded", value: ctx.memory.overloaded() ? 1 : 0 },
      { name: "wasmnet_draining", value: admission.draining ? 1 : 0 },
      { name: "wasmnet_redis_up", value: state.redisUp ? 1 : 0 },
      { name: "wasmnet_redis_errors_total", value: state.errors },
      { name: "wasmnet_redis_fallbacks_total", value: state.fallbacks },
      ...(options.extraMetrics?.() ?? []),
    ]);
  };

  const renderMetrics = async (): Promise<Response> => {
    // Taken before asking the peers, so what is rendered is exactly what they were shown.
    const own = series();
    const others = options.peerMetrics ? await options.peerMetrics(own).catch(() => []) : [];
    return new Response(renderSeries(mergeSeries([own, ...others])), { headers: { "content-type": "text/plain; version=0.0.4" } });
  };

  const fetch = (req: Request, server: Server<WsData>) => {
    if (req.method === "GET" && req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      const path = new URL(req.url).pathname;
      if (path === "/healthz") return new Response(admission.draining ? "draining\n" : "ok\n", { status: admission.draining ? 503 : 200 });
      if (path === "/metrics") return renderMetrics();
      if (path === "/wasmnet-client.js") return clientScriptResponse();
    }
    return upgrade(req, server);
  };

  const drainNow = () => {
    admission.draining = true;
    for (const ws of sockets) ws.close(1001, "server shutting down");
  };

  return {
    upgrade,
    websocket,
    fetch,
    ctx,
    sockets,
    ready: () => policies.ready(),
    get draining() {
      return admission.draining;
    },
    drain(secs = policies.current.server.drainSecs) {
      if (draining !== null) return draining;
      admission.draining = true;
      log.info("draining", { sessions: sockets.size, secs });
      if (sockets.size === 0) return (draining = Promise.resolve());
      return (draining = new Promise<void>((resolve) => {
        const timer = setTimeout(drainNow, secs * 1000);
        drained = () => {
          clearTimeout(timer);
          drained = null;
          resolve();
        };
      }));
    },
    drainNow,
    async reload() {
      const r = await policies.reload();
      if (r.ok) {
        metrics.reloads.ok++;
        log.info("policy reloaded", { source: r.source });
        if (r.restartNeeded.length > 0) log.warn("these settings changed but keep their start-up values until a restart", { settings: r.restartNeeded });
      } else {
        metrics.reloads.error++;
        log.error("policy reload failed; the running policy stays", { error: r.error });
      }
      return r;
    },
    series,
  };
}

/**
 * The subprotocol to answer with: never a `wasmnet.bearer.` entry, which Bun would echo back
 * (token and all) if the server named none while the client offered some.
 */
function selectProtocol(r: WsRoute, offered: string[], anyOffered: boolean): { protocol: string | null; refuse?: string } {
  if (offered.length === 0) {
    // Only bearer entries were offered: there is nothing real to answer with, and a browser
    // fails a handshake that answers with no protocol when it offered some.
    return anyOffered ? { protocol: null, refuse: "offer a real subprotocol (e.g. wasmnet) next to wasmnet.bearer.<token>" } : { protocol: null };
  }
  if (r.kind === "wisp") return { protocol: offered.includes("wisp-v2") ? "wisp-v2" : offered[0]! };
  return { protocol: offered.includes("wasmnet") ? "wasmnet" : offered[0]! };
}

// RFC 6455 4.1: the key is 16 random bytes, base64 (24 characters ending "=="); Bun's upgrade
// refuses any other key, and any version but 13.
const WEBSOCKET_KEY = /^[A-Za-z0-9+/]{22}==$/;

/** What is wrong with a WebSocket handshake request that server.upgrade() would refuse, or null. */
function handshakeProblem(req: Request): { status: 400 | 426; why: string } | null {
  const key = req.headers.get("sec-websocket-key");
  if (key === null || !WEBSOCKET_KEY.test(key.trim())) return { status: 400, why: "the upgrade has no valid Sec-WebSocket-Key" };
  if (req.headers.get("sec-websocket-version")?.trim() !== "13") return { status: 426, why: "expected Sec-WebSocket-Version 13" };
  return null;
}

/** Start-up warnings about a policy that leaves the server more open than intended. */
function warnAboutPolicy(ctx: SessionContext, noPolicy: boolean): void {
  const { log } = ctx;
  const policy = ctx.policies.current;
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
