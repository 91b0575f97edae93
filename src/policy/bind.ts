// Which local address and port a client may listen on (docs/protocol.md#bind). Pure.
import { canonicalIp } from "./address.ts";
import { addressListed, type Decision } from "./decide.ts";
import type { PolicyConfig } from "./load.ts";
import { portAllowed } from "./ports.ts";

const WILDCARDS = new Set(["0.0.0.0", "::"]);

function isLoopback(addr: string): boolean {
  return addr === "::1" || addr.startsWith("127.");
}

/** Port 0 is allowed here: the caller picks a free port inside bind_ports. */
export function decideBind(cfg: Pick<PolicyConfig, "bindPorts" | "bindPortsText" | "bindAddrs">, addr: string, port: number): Decision {
  const ip = canonicalIp(addr);
  if (ip === null) return { allowed: false, code: "bind_addr", rule: "bind_addrs", reason: `bind address "${addr.slice(0, 64)}" is not an IP address` };
  const listed = addressListed(cfg.bindAddrs, ip);
  if (!WILDCARDS.has(ip) && !isLoopback(ip) && !listed)
    return { allowed: false, code: "bind_addr", rule: "bind_addrs", reason: `bind address ${ip} is not a wildcard or loopback address and not in bind_addrs` };
  if (port !== 0 && !portAllowed(cfg.bindPorts, port))
    return { allowed: false, code: "bind_port", rule: "bind_ports", reason: `bind port ${port} is outside bind_ports ${cfg.bindPortsText}` };
  return { allowed: true, code: "allow", rule: "bind_ports", reason: `bind ${ip}:${port} allowed` };
}
