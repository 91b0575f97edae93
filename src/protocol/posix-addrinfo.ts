// getaddrinfo() as the program's libc means it, minus the look-up itself: which hints are valid,
// what the service names, and how a list of addresses becomes the addrinfo records the program
// gets back (docs/posix.md, "How wasmnet answers each call"). Pure: the look-up and the policy
// are the session's (the /posix/ adapter asks it with `resolve`). Browser-safe.
import { AF, AI, EAI, IPPROTO, SOCK } from "./posix-constants.ts";
import type { AddrinfoEntry, AddrinfoHints } from "./posix.ts";
import { parseIpv4, parseIpv6, type SockaddrInput } from "./posix-sockaddr.ts";

/** The flags this getaddrinfo understands; any other bit is EAI_BADFLAGS, as in musl. */
const KNOWN_FLAGS = AI.PASSIVE | AI.CANONNAME | AI.NUMERICHOST | AI.V4MAPPED | AI.ALL | AI.ADDRCONFIG | AI.NUMERICSERV;

/**
 * Service names a program may pass instead of a port number. A small fixed table (there is no
 * /etc/services to read on behalf of a browser program); anything else is EAI_SERVICE.
 */
export const SERVICE_PORTS: Readonly<Record<string, number>> = {
  echo: 7,
  discard: 9,
  daytime: 13,
  ftp: 21,
  ssh: 22,
  telnet: 23,
  smtp: 25,
  domain: 53,
  gopher: 70,
  http: 80,
  pop3: 110,
  ntp: 123,
  imap: 143,
  irc: 194,
  ldap: 389,
  https: 443,
  submission: 587,
  ldaps: 636,
  imaps: 993,
  pop3s: 995,
  mysql: 3306,
  postgresql: 5432,
  redis: 6379,
  "http-alt": 8080,
};

/** What the hints ask for, validated. */
export interface AddrinfoQuery {
  flags: number;
  /** AF_UNSPEC, AF_INET or AF_INET6. */
  family: number;
  /** The socket types to answer with, in order (both when the hints leave it open). */
  socktypes: number[];
}

export type Checked<T> = { ok: true; value: T } | { ok: false; eai: number };

/** Validates the hints (null: the program passed none, which means AF_UNSPEC, any type). */
export function checkHints(h: AddrinfoHints | null): Checked<AddrinfoQuery> {
  if (h === null) return { ok: true, value: { flags: 0, family: AF.UNSPEC, socktypes: [SOCK.STREAM, SOCK.DGRAM] } };
  if ((h.flags & ~KNOWN_FLAGS) !== 0) return { ok: false, eai: EAI.BADFLAGS };
  if (h.family !== AF.UNSPEC && h.family !== AF.INET && h.family !== AF.INET6) return { ok: false, eai: EAI.FAMILY };
  let socktypes: number[];
  if (h.socktype === 0) socktypes = [SOCK.STREAM, SOCK.DGRAM];
  else if (h.socktype === SOCK.STREAM || h.socktype === SOCK.DGRAM) socktypes = [h.socktype];
  else return { ok: false, eai: EAI.SOCKTYPE };
  if (h.protocol !== 0) {
    socktypes = socktypes.filter((t) => protocolOf(t) === h.protocol);
    if (socktypes.length === 0) return { ok: false, eai: EAI.SOCKTYPE };
  }
  return { ok: true, value: { flags: h.flags, family: h.family, socktypes } };
}

/**
 * The port a service names: null or "" is port 0, a decimal number 0–65535 is itself, a name
 * from SERVICE_PORTS its port unless AI_NUMERICSERV forbids names (EAI_NONAME, as glibc and musl
 * answer); anything else EAI_SERVICE.
 */
export function parseService(service: string | null, flags: number): Checked<number> {
  if (service === null || service === "") return { ok: true, value: 0 };
  if (/^[0-9]+$/.test(service)) {
    const port = Number(service);
    return port <= 0xffff ? { ok: true, value: port } : { ok: false, eai: EAI.SERVICE };
  }
  if (flags & AI.NUMERICSERV) return { ok: false, eai: EAI.NONAME };
  const port = SERVICE_PORTS[service.toLowerCase()];
  return port === undefined ? { ok: false, eai: EAI.SERVICE } : { ok: true, value: port };
}

/** The family of an IP literal as the program's inet_pton reads it (strict: no "127.1"), or null for a name. */
export function literalFamily(node: string): "ipv4" | "ipv6" | null {
  if (parseIpv4(node)) return "ipv4";
  if (parseIpv6(node)) return "ipv6";
  return null;
}

/**
 * The addresses a NULL node stands for: the wildcard with AI_PASSIVE (for bind), loopback
 * without (POSIX). IPv4 first, as musl orders them.
 */
export function nullNodeAddresses(q: AddrinfoQuery): string[] {
  const passive = (q.flags & AI.PASSIVE) !== 0;
  const out: string[] = [];
  if (q.family !== AF.INET6) out.push(passive ? "0.0.0.0" : "127.0.0.1");
  if (q.family !== AF.INET) out.push(passive ? "::" : "::1");
  return out;
}

/**
 * The addrinfo records for `addrs` (canonical IP text, as the session reports them): those of
 * the family asked for — with AI_V4MAPPED and AF_INET6, IPv4 addresses as ::ffff:a.b.c.d when
 * there is no IPv6 one (or always, with AI_ALL) — each once per socket type.
 */
export function addrinfoEntries(addrs: readonly string[], port: number, q: AddrinfoQuery): AddrinfoEntry[] {
  const v4 = addrs.filter((a) => parseIpv4(a) !== null);
  const v6 = addrs.filter((a) => parseIpv4(a) === null && parseIpv6(a) !== null);
  let chosen: SockaddrInput[];
  if (q.family === AF.INET) chosen = v4.map((a) => ({ family: "ipv4", address: a, port }));
  else if (q.family === AF.INET6) {
    chosen = v6.map((a) => ({ family: "ipv6", address: a, port }));
    const mapped = (q.flags & AI.V4MAPPED) !== 0 && (chosen.length === 0 || (q.flags & AI.ALL) !== 0);
    if (mapped) chosen.push(...v4.map((a): SockaddrInput => ({ family: "ipv6", address: `::ffff:${a}`, port })));
  } else {
    chosen = addrs.flatMap((a): SockaddrInput[] => (parseIpv4(a) ? [{ family: "ipv4", address: a, port }] : parseIpv6(a) ? [{ family: "ipv6", address: a, port }] : []));
  }
  return chosen.flatMap((addr) => q.socktypes.map((socktype) => ({ socktype, protocol: protocolOf(socktype), addr })));
}

function protocolOf(socktype: number): number {
  return socktype === SOCK.DGRAM ? IPPROTO.UDP : IPPROTO.TCP;
}
