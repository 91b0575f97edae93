// Who the client is, for per-IP limits and logs. Behind a TLS-terminating reverse proxy every
// session would otherwise come from the proxy's address; X-Forwarded-For is believed only when
// the direct peer is a configured trusted proxy, and only up to the first untrusted hop.
import { canonicalIp } from "../policy/address.ts";
import { addressListed } from "../policy/decide.ts";
import type { Entry } from "../policy/entry.ts";

export function clientIp(peer: string, forwardedFor: string | null, trusted: readonly Entry[]): string {
  const direct = canonicalIp(peer) ?? peer;
  if (trusted.length === 0 || forwardedFor === null) return direct;
  const isTrusted = (ip: string) => addressListed(trusted, ip);
  if (!isTrusted(direct)) return direct;
  // Walk from the nearest hop outwards; the first address not ours is the client.
  const hops = forwardedFor.split(",").map((h) => h.trim()).reverse();
  let client = direct;
  for (const hop of hops) {
    const ip = canonicalIp(hop);
    if (ip === null) break; // garbage: stop at the last address we could trust
    client = ip;
    if (!isTrusted(ip)) break;
  }
  return client;
}
