// Turning what a client asked for into canonical IP addresses. The server resolves names
// itself and only ever hands a canonical IP literal to Bun.connect (docs/bun.md#non-canonical-ip-literals, docs/bun.md#dns-caches-and-rebinding):
// Bun's own resolver would accept "2130706433" and keep a 30 s cache that ignores TTLs.
import { Resolver as NodeResolver } from "node:dns/promises";
import { TimeoutError, withTimeout } from "../limits/timeout.ts";
import { canonicalIp, isValidHostname, normalizeName } from "../policy/address.ts";

/** Looks a name up; returns the address strings the resolver gave, in its order. */
export type Resolver = (name: string) => Promise<string[]>;

export class ResolveError extends Error {
  constructor(
    readonly code: "ENOTFOUND" | "ETIMEDOUT" | "EBADREQ",
    message: string,
  ) {
    super(message);
  }
}

/** The system's resolver (c-ares: /etc/hosts, then the configured DNS servers). */
export const systemResolver: Resolver = async (name) => {
  const answers = await Bun.dns.lookup(name, { family: 0 });
  return answers.map((a) => a.address);
};

/**
 * A resolver that asks the given DNS servers directly ("127.0.0.1:5353"), A and AAAA.
 * For operators who want a specific resolver, and for tests with a DNS server on loopback.
 */
export function dnsServerResolver(servers: string[], timeoutMs = 2000): Resolver {
  const r = new NodeResolver({ timeout: timeoutMs, tries: 1 });
  r.setServers(servers);
  const quiet = (p: Promise<string[]>) =>
    p.catch((e: { code?: string }) => {
      if (e.code === "ENODATA" || e.code === "ENOTFOUND") return [] as string[];
      throw e;
    });
  return async (name) => {
    const [v4, v6] = await Promise.all([quiet(r.resolve4(name)), quiet(r.resolve6(name))]);
    return [...v4, ...v6];
  };
}

export interface ResolvedTarget {
  /** Normalized name, or null when the client gave an IP literal. */
  name: string | null;
  /** Canonical, de-duplicated addresses in resolver order. */
  addrs: string[];
}

/**
 * IP literals are canonicalised without a look-up; names are resolved with a timeout.
 * `lookupEnded` runs once the resolver itself has finished (at once when it is not asked): a
 * timeout only stops waiting for it, the look-up goes on, and whatever bounds look-ups in flight
 * must count it until then.
 */
export async function resolveTarget(host: string, resolver: Resolver, timeoutMs: number, lookupEnded?: () => void): Promise<ResolvedTarget> {
  const literal = canonicalIp(host);
  const name = literal === null ? normalizeName(host) : "";
  if (literal !== null || !isValidHostname(name)) {
    lookupEnded?.();
    if (literal !== null) return { name: null, addrs: [literal] };
    throw new ResolveError("EBADREQ", `"${host.slice(0, 64)}" is neither an IP address nor a valid host name`);
  }
  let lookup: Promise<string[]>;
  try {
    lookup = resolver(name);
  } catch (e) {
    lookup = Promise.reject(e); // a resolver that throws at once fails like one that rejects
  }
  if (lookupEnded) lookup.then(lookupEnded, lookupEnded);
  let raw: string[];
  try {
    raw = await withTimeout(lookup, timeoutMs, `resolve ${name}`);
  } catch (e) {
    if (e instanceof TimeoutError) throw new ResolveError("ETIMEDOUT", e.message);
    const code = String((e as { code?: string }).code ?? "");
    if (/TIMEOUT|EAI_AGAIN/.test(code)) throw new ResolveError("ETIMEDOUT", `resolve ${name} timed out`);
    throw new ResolveError("ENOTFOUND", `${name} not found`);
  }
  // Only literals that canonicalise count: a resolver answer is data, not trusted syntax.
  const addrs = [...new Set(raw.map(canonicalIp).filter((a): a is string => a !== null))];
  if (addrs.length === 0) throw new ResolveError("ENOTFOUND", `${name} has no addresses`);
  return { name, addrs };
}
