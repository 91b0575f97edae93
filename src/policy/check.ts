// `wasmnet policy check FILE [--profile NAME] [HOST:PORT …]`: what the server would do,
// decided by the same pure functions the server uses, with the resolver injected.
import { canonicalIp, formatHostPort, splitHostPort } from "./address.ts";
import { type PolicyConfig, policyFor } from "./config.ts";
import { type RuleSet, chooseAddress, decideAddress, decideName, withTokenAllow } from "./decide.ts";
import { type Entry, formatEntry } from "./entry.ts";
import { redactUrl } from "./tables.ts";

/** Whose view to explain: a profile (null: the top level), narrowed by a token's allow list (null: none). */
export interface CheckView {
  profile?: string | null;
  tokenAllow?: readonly Entry[] | null;
}

export class UnknownProfileError extends Error {
  override name = "UnknownProfileError";
}

function resolveView(cfg: PolicyConfig, view: CheckView): { policy: PolicyConfig; rules: RuleSet } {
  const name = view.profile ?? null;
  const policy = policyFor(cfg, name);
  if (policy === null) {
    const known = cfg.profiles.size === 0 ? "the file defines no profiles" : `profiles: ${[...cfg.profiles.keys()].join(", ")}`;
    throw new UnknownProfileError(`unknown profile ${JSON.stringify(name)} (${known})`);
  }
  return { policy, rules: withTokenAllow(policy.rules, view.tokenAllow ?? null) };
}

const unlimited = (n: number, unit = ""): string => (n === 0 ? "0 (unlimited)" : `${n}${unit}`);
const orNone = (v: string | null, none = "(none)"): string => v ?? none;

/** The effective settings, one per line. Throws UnknownProfileError for a profile the file lacks. */
export function formatPolicy(cfg: PolicyConfig, view: CheckView = {}): string {
  const { policy: p } = resolveView(cfg, view);
  const lines: string[] = [];
  lines.push(`source: ${p.source ?? "built-in defaults"}`);
  if (view.profile != null) lines.push(`profile: ${view.profile} (the top level, with [profiles.${view.profile}] tables over it)`);
  if (p.rules.deny.length === 0) lines.push("deny: (none)");
  for (const e of p.rules.deny) lines.push(`deny ${JSON.stringify(e.text)}${canonNote(formatEntry(e), e.text)}`);
  if (p.rules.allow.length === 0) lines.push("allow: (none: every destination is refused)");
  for (const e of p.rules.allow) lines.push(`allow ${JSON.stringify(e.text)}${canonNote(formatEntry(e), e.text)}`);
  if (view.tokenAllow != null) {
    if (view.tokenAllow.length === 0) lines.push("token allow: (none: every destination is refused)");
    for (const e of view.tokenAllow) lines.push(`token allow ${JSON.stringify(e.text)}${canonNote(formatEntry(e), e.text)}`);
  }
  lines.push(`bind_ports: ${p.bindPortsText}`);
  lines.push(`bind_addrs: wildcard, loopback${p.bindAddrs.map((e) => `, ${formatEntry(e)}`).join("")}`);
  lines.push(`max_connections: ${unlimited(p.maxConnections)}`);
  lines.push(`max_bandwidth_mbps: ${unlimited(p.maxBandwidthMbps)}`);
  lines.push(`connection_timeout_secs: ${p.connectionTimeoutSecs}`);
  const L = p.limits;
  lines.push(`limits.max_sessions: ${unlimited(L.maxSessions)}`);
  lines.push(`limits.max_sessions_per_ip: ${unlimited(L.maxSessionsPerIp)}`);
  lines.push(`limits.max_memory_mb: ${L.maxMemoryMb}`);
  lines.push(`limits.stream_buffer_bytes: ${L.streamBufferBytes}`);
  lines.push(`limits.max_message_bytes: ${L.maxMessageBytes}`);
  lines.push(`limits.idle_timeout_secs: ${L.idleTimeoutSecs === 0 ? "0 (none)" : L.idleTimeoutSecs}`);
  lines.push(`limits.max_sessions_per_identity: ${unlimited(L.maxSessionsPerIdentity)}`);
  lines.push(`limits.max_connections_per_identity: ${unlimited(L.maxConnectionsPerIdentity)}`);
  lines.push(`limits.max_bandwidth_mbps_per_identity: ${unlimited(L.maxBandwidthMbpsPerIdentity)}`);
  lines.push(`limits.max_bytes_per_day: ${unlimited(L.maxBytesPerDay)}`);
  lines.push(`tls.ca_file: ${orNone(p.tls.caFile)}`);
  lines.push(`pool.idle_secs: ${p.pool.idleSecs === 0 ? "0 (pooling off)" : p.pool.idleSecs}`);
  lines.push(`pool.per_key: ${p.pool.perKey}`);
  lines.push(`pool.warm: ${p.pool.warm.length === 0 ? "(none)" : p.pool.warm.join(", ")}`);
  const origins = p.server.allowedOrigins;
  lines.push(`server.allowed_origins: ${origins === null ? "(any origin)" : origins.join(", ") || "(none)"}`);
  lines.push(`server.trusted_proxies: ${p.server.trustedProxies.map(formatEntry).join(", ") || "(none)"}`);
  lines.push(`server.workers: ${p.server.workers}`);
  lines.push(`server.drain_secs: ${p.server.drainSecs}`);
  const A = p.auth;
  lines.push(`auth.required: ${A.required}${A.required ? "" : " (anonymous sessions allowed)"}`);
  lines.push(`auth.audience: ${orNone(A.audience)}`);
  lines.push(`auth.issuers: ${A.issuers === null ? "(any)" : A.issuers.join(", ")}`);
  lines.push(`auth.hs256_secret_file: ${orNone(A.hs256SecretFile)}`);
  lines.push(`auth.jwks_file: ${orNone(A.jwksFile)}`);
  lines.push(`auth.leeway_secs: ${A.leewaySecs}`);
  const C = p.cluster;
  lines.push(`cluster.redis: ${C.redis === null ? "(none: limits are per process)" : redactUrl(new URL(C.redis))}`);
  lines.push(`cluster.lease_secs: ${C.leaseSecs}`);
  lines.push(`cluster.on_redis_error: ${C.onRedisError}`);
  if (view.profile == null) lines.push(`profiles: ${cfg.profiles.size === 0 ? "(none)" : [...cfg.profiles.keys()].join(", ")}`);
  return lines.join("\n");
}

// Show how an entry was read when that differs from how it was written
// ("API.Example.com." → api.example.com), so surprises surface here.
function canonNote(canon: string, text: string): string {
  return canon === text ? "" : ` (read as ${canon})`;
}

/** Each destination's verdict under the view. Throws UnknownProfileError for a profile the file lacks. */
export async function checkDestinations(
  cfg: PolicyConfig,
  dests: string[],
  resolve: (name: string) => Promise<string[]>,
  view: CheckView = {},
): Promise<{ lines: string[]; anyDenied: boolean }> {
  const { rules } = resolveView(cfg, view);
  const lines: string[] = [];
  let anyDenied = false;
  for (const dest of dests) {
    const hp = splitHostPort(dest);
    if (hp === null) {
      anyDenied = true;
      lines.push(`denied  ${dest}: not a HOST:PORT (IPv6 as [::1]:443), or an invalid host name or port`);
      continue;
    }
    const shown = formatHostPort(hp.host, hp.port);
    if (hp.isIp) {
      const d = decideAddress(rules, null, hp.host, hp.port);
      anyDenied ||= !d.allowed;
      lines.push(`${verdict(d.allowed)} ${shown}: rule ${JSON.stringify(d.rule)}: ${d.reason}`);
      continue;
    }
    const byName = decideName(rules, hp.host, hp.port);
    if (!byName.allowed) {
      anyDenied = true;
      lines.push(`denied  ${shown} (not resolved): rule ${JSON.stringify(byName.rule)}: ${byName.reason}`);
      continue;
    }
    let addrs: string[];
    try {
      addrs = await resolve(hp.host);
    } catch (e) {
      anyDenied = true;
      lines.push(`denied  ${shown}: resolution failed: ${(e as Error).message}`);
      continue;
    }
    const shownAddrs = addrs.map((a) => canonicalIp(a) ?? `${a}?`).join(", ") || "(none)";
    const c = chooseAddress(rules, hp.host, addrs, hp.port);
    anyDenied ||= c.addr === null;
    const via = c.addr === null ? "" : ` via ${c.addr}`;
    lines.push(
      `${verdict(c.decision.allowed)} ${shown}${via} [resolved: ${shownAddrs}]: rule ${JSON.stringify(c.decision.rule)}: ${c.decision.reason}`,
    );
  }
  return { lines, anyDenied };
}

function verdict(allowed: boolean): string {
  return allowed ? "allowed" : "denied ";
}
