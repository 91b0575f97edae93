// Who may open a session, decided before the WebSocket upgrade: not while draining, only from
// allowed Origins, within max_sessions and max_sessions_per_ip. Refusals are plain HTTP answers
// with a status and a one-line reason, logged once.
import type { Server } from "bun";
import type { Logger } from "../log.ts";
import type { PolicyConfig } from "../policy/load.ts";
import type { Metrics } from "../session/metrics.ts";
import { clientIp } from "./client-ip.ts";

export type Admitted = { ok: true; remote: string } | { ok: false; response: Response };

export class Admission {
  /** Set once: no new sessions, /healthz 503. */
  draining = false;
  private readonly perIp = new Map<string, number>();

  constructor(
    private readonly policy: PolicyConfig,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  refuse(status: number, why: string): Response {
    this.log.info("upgrade refused", { status, why });
    return new Response(why + "\n", { status });
  }

  admit(req: Request, server: Server<unknown>): Admitted {
    const no = (status: number, why: string): Admitted => ({ ok: false, response: this.refuse(status, why) });
    if (this.draining) return no(503, "server is shutting down");
    const { allowedOrigins, trustedProxies } = this.policy.server;
    const origin = req.headers.get("origin");
    if (allowedOrigins !== null && (origin === null || !allowedOrigins.includes(origin))) return no(403, `origin ${origin ?? "(none)"} is not in allowed_origins`);
    const remote = clientIp(server.requestIP(req)?.address ?? "unknown", req.headers.get("x-forwarded-for"), trustedProxies);
    const { maxSessions, maxSessionsPerIp } = this.policy.limits;
    if (maxSessions > 0 && this.metrics.sessions >= maxSessions) return no(503, `max_sessions (${maxSessions}) reached`);
    if (maxSessionsPerIp > 0 && (this.perIp.get(remote) ?? 0) >= maxSessionsPerIp) return no(429, `max_sessions_per_ip (${maxSessionsPerIp}) reached for ${remote}`);
    return { ok: true, remote };
  }

  /** A session from `remote` opened (its WebSocket is up). */
  opened(remote: string): void {
    this.perIp.set(remote, (this.perIp.get(remote) ?? 0) + 1);
  }

  closed(remote: string): void {
    const n = (this.perIp.get(remote) ?? 1) - 1;
    if (n > 0) this.perIp.set(remote, n);
    else this.perIp.delete(remote);
  }
}
