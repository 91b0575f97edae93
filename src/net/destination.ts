// The one path from "what the client asked for" to "the address we will use": name rules
// before any look-up, resolution, then the address rules on every resolved address. Every
// operation that opens or sends (connect, connect_tls, connect_udp, send_to) comes through here.
import type { ErrorCode } from "../protocol/constants.ts";
import { canonicalIp, normalizeName } from "../policy/address.ts";
import { chooseAddress, decideName, type Decision, type RuleSet } from "../policy/decide.ts";
import { resolveTarget, ResolveError, type Resolver } from "./resolve.ts";

export type Destination =
  | { ok: true; name: string | null; addr: string; port: number; rule: string }
  | { ok: false; denied: Decision }
  | { ok: false; denied?: undefined; code: ErrorCode; msg: string };

export async function pickDestination(
  rules: RuleSet,
  resolver: Resolver,
  dnsTimeoutMs: number,
  host: string,
  port: number,
  /** For an IP literal: the name this session resolved it from, so name rules still apply. */
  nameOf?: (ip: string) => string | undefined,
): Promise<Destination> {
  const literal = canonicalIp(host);
  let name: string | null;
  let addrs: string[];
  if (literal !== null) {
    name = nameOf?.(literal) ?? null;
    addrs = [literal];
  } else {
    // A name refused by a name rule is refused before anything is looked up.
    const byName = decideName(rules, normalizeName(host), port);
    if (!byName.allowed) return { ok: false, denied: byName };
    try {
      ({ name, addrs } = await resolveTarget(host, resolver, dnsTimeoutMs));
    } catch (e) {
      const err = e instanceof ResolveError ? e : new ResolveError("ENOTFOUND", String(e));
      return { ok: false, code: err.code, msg: err.message };
    }
  }
  const choice = chooseAddress(rules, name, addrs, port);
  if (choice.addr === null) return { ok: false, denied: choice.decision };
  return { ok: true, name, addr: choice.addr, port, rule: choice.decision.rule };
}
