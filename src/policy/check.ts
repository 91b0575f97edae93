// `wasmnet policy check FILE [HOST:PORT …]`: what the server would do, decided
// by the same pure functions the server uses, with the resolver injected.
import { canonicalIp, formatHostPort, splitHostPort } from "./address.ts";
import { chooseAddress, decideAddress, decideName } from "./decide.ts";
import { formatEntry } from "./entry.ts";
import type { PolicyConfig } from "./load.ts";
import { formatPortList } from "./ports.ts";

const unlimited = (n: number, unit = ""): string => (n === 0 ? "0 (unlimited)" : `${n}${unit}`);

export function formatPolicy(cfg: PolicyConfig): string {
  const lines: string[] = [];
  lines.push(`source: ${cfg.source ?? "built-in defaults"}`);
  if (cfg.rules.deny.length === 0) lines.push("deny: (none)");
  for (const e of cfg.rules.deny) lines.push(`deny ${JSON.stringify(e.text)}${canonNote(formatEntry(e), e.text)}`);
  if (cfg.rules.allow.length === 0) lines.push("allow: (none: every destination is refused)");
  for (const e of cfg.rules.allow) lines.push(`allow ${JSON.stringify(e.text)}${canonNote(formatEntry(e), e.text)}`);
  lines.push(`bind_ports: ${formatPortList(cfg.bindPorts)}`);
  lines.push(`bind_addrs: wildcard, loopback${cfg.bindAddrs.map((e) => `, ${formatEntry(e)}`).join("")}`);
  lines.push(`max_connections: ${unlimited(cfg.maxConnections)}`);
  lines.push(`max_bandwidth_mbps: ${unlimited(cfg.maxBandwidthMbps)}`);
  lines.push(`connection_timeout_secs: ${cfg.connectionTimeoutSecs}`);
  lines.push(`limits.max_sessions: ${unlimited(cfg.limits.maxSessions)}`);
  lines.push(`limits.max_sessions_per_ip: ${unlimited(cfg.limits.maxSessionsPerIp)}`);
  lines.push(`limits.stream_buffer_bytes: ${cfg.limits.streamBufferBytes}`);
  lines.push(`limits.max_message_bytes: ${cfg.limits.maxMessageBytes}`);
  lines.push(`limits.idle_timeout_secs: ${cfg.limits.idleTimeoutSecs === 0 ? "0 (none)" : cfg.limits.idleTimeoutSecs}`);
  lines.push(`tls.ca_file: ${cfg.tls.caFile ?? "(none)"}`);
  lines.push(`pool.idle_secs: ${cfg.pool.idleSecs === 0 ? "0 (pooling off)" : cfg.pool.idleSecs}`);
  lines.push(`pool.per_key: ${cfg.pool.perKey}`);
  lines.push(`pool.warm: ${cfg.pool.warm.length === 0 ? "(none)" : cfg.pool.warm.join(", ")}`);
  lines.push(
    `server.allowed_origins: ${cfg.server.allowedOrigins === null ? "(any origin)" : cfg.server.allowedOrigins.join(", ") || "(none)"}`,
  );
  return lines.join("\n");
}

// Show how an entry was read when that differs from how it was written
// ("API.Example.com." → api.example.com), so surprises surface here.
function canonNote(canon: string, text: string): string {
  return canon === text ? "" : ` (read as ${canon})`;
}

export async function checkDestinations(
  cfg: PolicyConfig,
  dests: string[],
  resolve: (name: string) => Promise<string[]>,
): Promise<{ lines: string[]; anyDenied: boolean }> {
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
      const d = decideAddress(cfg.rules, null, hp.host, hp.port);
      anyDenied ||= !d.allowed;
      lines.push(`${verdict(d.allowed)} ${shown}: rule ${JSON.stringify(d.rule)}: ${d.reason}`);
      continue;
    }
    const byName = decideName(cfg.rules, hp.host, hp.port);
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
    const c = chooseAddress(cfg.rules, hp.host, addrs, hp.port);
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

