// Who may open a session, decided before the WebSocket upgrade (plain HTTP answers with a status
// and a one-line reason, logged once, counted in /metrics):
//   503 draining, or over the memory budget, or max_sessions reached;
//   403 an Origin not in allowed_origins;
//   401 / 431 a missing (when required), bad or oversized token, or an unknown profile;
//   429 max_sessions_per_ip or max_sessions_per_identity reached, or (plain GET checks only)
//       more than ADMISSION_CHECKS_PER_SEC of them from one address.
// An admitted session gets its identity and its unit of the session limits (a lease, given back
// when it ends); the limits are counted by ctx.counters, in this process or in Redis.
import type { Server } from "bun";
import { authenticateRequest, authFailureResponse } from "../auth/authenticate.ts";
import { redactedPath } from "../auth/transport.ts";
import { ADMISSION_CHECK_BURST, ADMISSION_CHECKS_PER_SEC } from "../constants.ts";
import { EMPTY_LEASE, type Lease, type LimitSpec } from "../limits/counters.ts";
import { KeyedRate } from "../limits/keyed-rate.ts";
import { policyFor } from "../policy/load.ts";
import type { SessionContext } from "../session/context.ts";
import { anonymous, type Identity } from "../session/identity.ts";
import type { PolicyStore } from "./policy-store.ts";
import { clientIp } from "./client-ip.ts";

export type Admitted =
  | { ok: true; remote: string; identity: Identity; lease: Lease; protocols: string[] }
  | { ok: false; response: Response };

export class Admission {
  /** Set once: no new sessions, /healthz 503. */
  draining = false;
  /** Plain GET admission checks per client address (they cost a counters round trip each). */
  private readonly checks = new KeyedRate(ADMISSION_CHECKS_PER_SEC, ADMISSION_CHECK_BURST);

  constructor(private readonly ctx: SessionContext & { policies: PolicyStore }) {}

  /** A plain-text refusal, counted and logged. */
  refuse(status: number, why: string, req?: Request, headers?: Record<string, string>): Response {
    // Readable from any origin: a page using the client learns why it was refused.
    const response = new Response(why + "\n", { status, headers: { "content-type": "text/plain; charset=utf-8", "access-control-allow-origin": "*", ...headers } });
    return this.counted(response, why, req);
  }

  /** Every refusal passes here once: counted in /metrics, logged. */
  private counted(response: Response, why: string, req: Request | undefined): Response {
    this.ctx.metrics.refusedSession(response.status);
    // Paths are logged without their query: a token may ride in it.
    this.ctx.log.info("upgrade refused", { status: response.status, why, ...(req ? { path: redactedPath(req.url) } : {}) });
    return response;
  }

  /** A token refusal: 401 with its Bearer challenge, or 431. */
  private unauthorized(req: Request, failure: { status: 401 | 431; description: string }): Admitted {
    return { ok: false, response: this.counted(authFailureResponse(failure), failure.description, req) };
  }

  /**
   * Decide on a session. `count`: take its unit of the session limits (false for a plain GET,
   * which only learns whether it would be let in — how the browser client reads a refusal's reason).
   */
  async admit(req: Request, server: Server<unknown>, count = true): Promise<Admitted> {
    const no = (status: number, why: string): Admitted => ({ ok: false, response: this.refuse(status, why, req) });
    const { policies, memory, counters } = this.ctx;
    if (this.draining) return no(503, "server is shutting down");
    const top = policies.current;
    const { allowedOrigins, trustedProxies } = top.server;
    const origin = req.headers.get("origin");
    if (allowedOrigins !== null && (origin === null || !allowedOrigins.includes(origin))) return no(403, `origin ${origin ?? "(none)"} is not in allowed_origins`);
    if (memory.overloaded(true)) return no(503, "server is over its memory budget; try again later");
    const remote = clientIp(server.requestIP(req)?.address ?? "unknown", req.headers.get("x-forwarded-for"), trustedProxies);
    // Before the token is verified (a signature check each) and the counters asked: a flood of
    // checks, with good tokens or bad, is cut here.
    if (!count && !this.checks.allow(remote)) return no(429, `too many admission checks from ${remote}; try again later`);

    try {
      await policies.ready();
    } catch {
      return no(503, "the server's token keys could not be loaded");
    }
    const auth = await authenticateRequest(req, top.auth, policies.keys);
    if (!auth.ok) return this.unauthorized(req, auth);
    let identity: Identity = anonymous(remote);
    let profile = top;
    if (auth.identity !== null) {
      // A profile this policy does not have is refused: never quietly the top level, which may grant more.
      const named = policyFor(top, auth.profile);
      if (named === null) return this.unauthorized(req, { status: 401, description: `unknown profile "${auth.profile}"` });
      profile = named;
      identity = { key: `sub:${auth.identity}`, name: auth.identity, profile: auth.profile, allow: auth.allow };
    }

    const specs: LimitSpec[] = [
      { key: "sessions", max: top.limits.maxSessions },
      { key: `ip:${remote}`, max: top.limits.maxSessionsPerIp },
      { key: `id:${identity.key}:sessions`, max: profile.limits.maxSessionsPerIdentity },
    ];
    const got = await counters.acquire(specs);
    if (!got.ok) {
      if (got.reason === "unavailable") return no(503, `cluster limits are unavailable (${counters.state.backend === "redis" ? "Redis" : "the supervisor"} does not answer); try again later`);
      if (got.key === "sessions") return no(503, `max_sessions (${got.max}) reached`);
      if (got.key.startsWith("ip:")) return no(429, `max_sessions_per_ip (${got.max}) reached for ${remote}`);
      return no(429, `max_sessions_per_identity (${got.max}) reached for ${identity.name ?? remote}`);
    }
    // A plain GET only asks whether a session would be let in (429 and 503 included): give the unit back.
    if (!count) {
      got.lease.release();
      return { ok: true, remote, identity, lease: EMPTY_LEASE, protocols: auth.protocols };
    }
    return { ok: true, remote, identity, lease: got.lease, protocols: auth.protocols };
  }
}
