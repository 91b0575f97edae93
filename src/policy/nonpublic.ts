// The ranges behind the word `nonpublic` in a deny list: everything a browser
// client must not reach through us, because it is this host, the operator's
// network, a cloud metadata service, or a prefix that embeds an IPv4 address a
// gateway would turn back into one of those. Order matters only for labels:
// the narrower range comes first so `::1` reads "loopback", not
// "IPv4-compatible".
import ipaddr from "ipaddr.js";
import type { IP } from "./address.ts";

export interface NonpublicRange {
  cidr: string;
  label: string;
  net: IP;
  bits: number;
}

const TABLE: ReadonlyArray<readonly [string, string]> = [
  // IPv4
  ["0.0.0.0/8", "this network"],
  ["10.0.0.0/8", "private"],
  ["100.64.0.0/10", "CGNAT (shared address space)"],
  ["127.0.0.0/8", "loopback"],
  ["169.254.0.0/16", "link-local (cloud metadata)"],
  ["172.16.0.0/12", "private"],
  ["192.0.0.0/24", "IETF protocol assignments"],
  ["192.0.2.0/24", "documentation"],
  ["192.168.0.0/16", "private"],
  ["198.18.0.0/15", "benchmarking"],
  ["198.51.100.0/24", "documentation"],
  ["203.0.113.0/24", "documentation"],
  ["224.0.0.0/4", "multicast"],
  ["255.255.255.255/32", "broadcast"],
  ["240.0.0.0/4", "reserved"],
  // IPv6 (::ffff:0:0/96 never gets here: canonicalisation makes it IPv4)
  ["::/128", "unspecified"],
  ["::1/128", "loopback"],
  ["::/96", "IPv4-compatible (deprecated)"],
  // RFC 6145 IPv4-translated addresses embed IPv4 just like the mapped form,
  // but canonicalisation does not unwrap them, so they must be refused here.
  ["::ffff:0:0:0/96", "IPv4-translated (SIIT)"],
  ["64:ff9b::/96", "NAT64"],
  ["64:ff9b:1::/48", "NAT64 (local-use)"],
  ["100::/64", "discard-only"],
  ["2001::/32", "Teredo"],
  ["2001:db8::/32", "documentation"],
  ["2002::/16", "6to4"],
  ["fc00::/7", "unique local (private)"],
  ["fe80::/10", "link-local"],
  // Deprecated, but some stacks still route it as site-private.
  ["fec0::/10", "site-local (deprecated)"],
  ["ff00::/8", "multicast"],
];

export const NONPUBLIC_RANGES: readonly NonpublicRange[] = Object.freeze(
  TABLE.map(([cidr, label]) => {
    const [net, bits] = ipaddr.parseCIDR(cidr);
    return Object.freeze({ cidr, label, net, bits });
  }),
);

// The gate asks for every datagram and connect, and parseIp hands out one shared object per
// address string, so the answer is kept per object (a walk of the table is ~1 µs). Weak: an
// address no longer parsed anywhere takes its entry with it. IP objects are never mutated.
const rangeOf = new WeakMap<IP, NonpublicRange | null>();

/** The first nonpublic range containing `ip`, or null if the address is public. */
export function nonpublicRange(ip: IP): NonpublicRange | null {
  const known = rangeOf.get(ip);
  if (known !== undefined) return known;
  let found: NonpublicRange | null = null;
  for (const r of NONPUBLIC_RANGES) {
    if (r.net.kind() === ip.kind() && ip.match(r.net, r.bits)) {
      found = r;
      break;
    }
  }
  rangeOf.set(ip, found);
  return found;
}

// `localhost` is loopback by definition (RFC 6761) and resolvers and socket
// layers disagree about which loopback (Bun.connect reached a ::1-only listener
// through "localhost" while /etc/hosts listed only 127.0.0.1), so it is refused by name before any look-up.
export function isLocalhostName(normalizedName: string): boolean {
  return normalizedName === "localhost" || normalizedName.endsWith(".localhost");
}
