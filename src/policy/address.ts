// Canonicalisation of what a client asked for. The policy is only as good as
// its agreement with the socket layer about what a string means: Bun.connect
// reaches a 127.0.0.1 listener through "127.1", "2130706433", "0x7f000001",
// "017700000001" and "::ffff:7f00:1" (observed; ipaddr.js reads all of them the
// same way), so anything ipaddr.js accepts is an IP, never a name, and only the
// canonical form is ever handed onwards.
import ipaddr from "ipaddr.js";

export type IP = ipaddr.IPv4 | ipaddr.IPv6;

/**
 * The canonical string of an IP literal in any form ipaddr.js accepts, or null
 * if `input` is not an IP literal. IPv4-mapped IPv6 becomes the IPv4 address it
 * is; IPv6 comes out RFC 5952-compressed. Zone ids are refused (null): a scoped
 * link-local address has no meaning for a remote client, and a caller that then
 * tries it as a host name gets an invalid name.
 */
export function canonicalIp(input: string): string | null {
  const ip = parseIp(input);
  return ip === null ? null : ip.toString();
}

// ipaddr.js tries a series of regular expressions per parse (µs each once warm, far more
// before): every connect parses the same few strings several times over (request, resolver
// answer, each rule check), so results are memoised. Bounded: cleared when full, so hostile
// input costs at most a re-parse. The objects are shared: callers must not mutate them.
const PARSE_CACHE_MAX = 4096;
const parsed = new Map<string, IP | null>();

/** Like canonicalIp but returns the parsed, canonical ipaddr.js object. */
export function parseIp(input: string): IP | null {
  const hit = parsed.get(input);
  if (hit !== undefined) return hit;
  const ip = parseUncached(input);
  if (parsed.size >= PARSE_CACHE_MAX) parsed.clear();
  parsed.set(input, ip);
  return ip;
}

function parseUncached(input: string): IP | null {
  let s = input;
  let bracketed = false;
  if (s.startsWith("[") && s.endsWith("]")) {
    s = s.slice(1, -1);
    bracketed = true;
  }
  if (s.includes("%")) return null;
  if (!ipaddr.isValid(s)) return null;
  let ip: IP;
  try {
    ip = ipaddr.process(s);
  } catch {
    return null;
  }
  // "[127.0.0.1]" is not a form anyone should rely on; brackets are for IPv6.
  if (bracketed && !ipaddr.IPv6.isValid(s)) return null;
  return ip;
}

/** Host names compare lower-cased without one trailing dot (the FQDN root). */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/i;
// A last label that reads as a number is how "1.2.3.4." or "0x7f.1." would be
// smuggled past canonicalIp: no real TLD is numeric, and some resolvers and
// socket layers would still read the string as an address.
const NUMERIC_LABEL = /^(?:[0-9]+|0x[0-9a-f]*)$/i;

/**
 * LDH labels of 1-63 characters (underscores allowed, for SRV-style names),
 * at most 253 characters in all, no empty labels, and a last label that does
 * not look like a number. Expects a normalized name (no trailing dot).
 */
export function isValidHostname(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split(".");
  for (const l of labels) {
    if (!LABEL.test(l)) return false;
  }
  return !NUMERIC_LABEL.test(labels[labels.length - 1]!);
}

export interface HostPort {
  host: string; // canonical IP or normalized name
  isIp: boolean;
  port: number;
}

/**
 * Split "host:port" or "[v6]:port" into a canonical host and a port. Null when
 * the host is neither an IP literal nor a valid host name, or the port is not
 * 1-65535. Bare IPv6 without brackets is refused: its last group would be
 * indistinguishable from a port.
 */
export function splitHostPort(input: string): HostPort | null {
  let hostText: string;
  let portText: string;
  if (input.startsWith("[")) {
    const close = input.indexOf("]");
    if (close === -1 || input[close + 1] !== ":") return null;
    hostText = input.slice(0, close + 1);
    portText = input.slice(close + 2);
  } else {
    const colon = input.lastIndexOf(":");
    if (colon === -1 || input.indexOf(":") !== colon) return null;
    hostText = input.slice(0, colon);
    portText = input.slice(colon + 1);
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port < 1 || port > 65535) return null;
  const ip = canonicalIp(hostText);
  if (ip !== null) return { host: ip, isIp: true, port };
  const name = normalizeName(hostText);
  if (!isValidHostname(name)) return null;
  return { host: name, isIp: false, port };
}

/** "1.2.3.4:80" / "[2001:db8::1]:80"; a null port leaves it off. */
export function formatHostPort(host: string, port: number | null): string {
  const h = host.includes(":") ? `[${host}]` : host;
  return port === null ? h : `${h}:${port}`;
}
