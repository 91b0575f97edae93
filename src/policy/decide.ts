// THE security decision. Pure: no DNS, no sockets, no clock. Everything the
// server does with a destination goes through these functions, in this order:
// (1) a matching deny entry other than `*` refuses; (2) a matching allow entry
// permits; (3) anything else is refused. `*` is skipped on the deny side so
// that `deny = ["*"]` plus an allow list reads as deny-by-default.
// When a token narrows the rules (its `wasmnet.allow` claim), a destination the
// rules permit must also match one of the token's entries: the token is checked
// only after the policy has said yes, so it can take away and never add.
//
// Address entries are matched against what the resolver returned, in canonical
// form, never against the string the client sent; name entries are matched
// against the requested name. A deny on either side wins.
import { type IP, canonicalIp, formatHostPort, normalizeName, parseIp } from "./address.ts";
import { type Entry, parseEntry } from "./entry.ts";
import { isLocalhostName, nonpublicRange } from "./nonpublic.ts";

export interface RuleSet {
  deny: Entry[];
  allow: Entry[];
  /** A token's allow list: when set, a destination must match one of these too. Empty = nothing. */
  tokenAllow?: readonly Entry[] | null;
}

/** The rule of a decision refused because the token's allow list has no matching entry. */
export const TOKEN_ALLOW_RULE = "token allow";

/**
 * Why, in one word: `allow` (an allow entry matched), `deny` (a deny entry matched), `no_allow`
 * (nothing allowed it), `token` (outside the token's allow list), `no_address` (the name had no
 * address, or the input was not an address), `bind_addr` / `bind_port` (bind rules).
 */
export type DecisionCode = "allow" | "deny" | "no_allow" | "token" | "no_address" | "bind_addr" | "bind_port";

export interface Decision {
  allowed: boolean;
  code: DecisionCode;
  rule: string; // the entry text that decided, or "default"
  reason: string;
}

export type Choice = { addr: string; decision: Decision } | { addr: null; decision: Decision };

export const DEFAULT_DENY: readonly string[] = Object.freeze(["nonpublic", "*:25"]);
export const DEFAULT_ALLOW: readonly string[] = Object.freeze(["*"]);

export function compileRules(deny: readonly string[], allow: readonly string[]): RuleSet {
  return { deny: deny.map(parseEntry), allow: allow.map(parseEntry) };
}

/** `rules` narrowed by a token's allow list (null: not narrowed). */
export function withTokenAllow(rules: RuleSet, tokenAllow: readonly Entry[] | null): RuleSet {
  return { deny: rules.deny, allow: rules.allow, tokenAllow };
}

export const ALLOW_ALL: RuleSet = Object.freeze({
  deny: Object.freeze([]) as unknown as Entry[],
  allow: Object.freeze([parseEntry("*")]) as unknown as Entry[],
});

// Why an entry's host part matches, as a sentence fragment; null if it does not.
function hostMatch(e: Entry, name: string | null, ip: IP | null, addr: string | null): string | null {
  const h = e.host;
  switch (h.kind) {
    case "any":
      return "matches everything";
    case "nonpublic": {
      if (name !== null && isLocalhostName(name)) return `${name} is a localhost name`;
      if (ip === null) return null;
      const r = nonpublicRange(ip);
      return r === null ? null : `${addr} is ${r.label} (${r.cidr})`;
    }
    case "cidr":
      if (ip === null || ip.kind() !== h.net.kind() || !ip.match(h.net, h.bits)) return null;
      return `${addr} is in ${h.net.toString()}/${h.bits}`;
    case "name":
      return name === h.name ? `name ${name} matches` : null;
    case "wildcard":
      // Strict subdomain: "github.com" and "evilgithub.com" do not match ".github.com".
      return name !== null && name.length > h.suffix.length && name.endsWith(h.suffix)
        ? `${name} is a subdomain of ${h.suffix.slice(1)}`
        : null;
  }
}

// A null port (resolve) means no concrete port: port-qualified entries stay out.
/** Deny side: with no port (resolve), a port-qualified entry does not apply. */
function portMatch(e: Entry, port: number | null): boolean {
  if (e.ports === null) return true;
  return port !== null && port >= e.ports.lo && port <= e.ports.hi;
}

/**
 * Allow side: with no port (resolve), a port-qualified entry does apply — a name the policy
 * lets a client reach on some port may be looked up, or `*.example.com:443` would break every
 * getaddrinfo() before a connect.
 */
function allowPortMatch(e: Entry, port: number | null): boolean {
  return port === null || portMatch(e, port);
}

function isBareStar(e: Entry): boolean {
  return e.host.kind === "any" && e.ports === null;
}

// Entries that can refuse a name before it is resolved: the name patterns,
// `nonpublic` (for localhost names) and port-qualified `*` such as `*:25`.
function canRefuseName(e: Entry): boolean {
  return e.host.kind !== "cidr" && !isBareStar(e);
}

function describe(name: string | null, addr: string | null, port: number | null): string {
  if (name === null) return formatHostPort(addr ?? "?", port);
  const hp = formatHostPort(name, port);
  return addr === null ? hp : `${hp} (${addr})`;
}

function matchReason(e: Entry, why: string, port: number | null): string {
  const onPort = e.ports !== null && port !== null ? ` on port ${port}` : "";
  return `${why}${onPort}`;
}

/** Check one (requested name, resolved address, port). `name` is null for IP literals. */
export function decideAddress(rules: RuleSet, name: string | null, addr: string, port: number | null): Decision {
  const ip = parseIp(addr);
  const n = name === null ? null : normalizeName(name);
  if (ip === null) {
    return { allowed: false, code: "no_address", rule: "default", reason: `${JSON.stringify(addr)} is not an IP address` };
  }
  const a = ip.toString();
  for (const e of rules.deny) {
    if (isBareStar(e) || !portMatch(e, port)) continue;
    const why = hostMatch(e, n, ip, a);
    if (why !== null) {
      return { allowed: false, code: "deny", rule: e.text, reason: `deny ${JSON.stringify(e.text)}: ${matchReason(e, why, port)}` };
    }
  }
  for (const e of rules.allow) {
    if (!allowPortMatch(e, port)) continue;
    const why = hostMatch(e, n, ip, a);
    if (why !== null) {
      const what = e.host.kind === "any" ? `${describe(n, a, port)} matches` : why;
      const d = { allowed: true, code: "allow" as const, rule: e.text, reason: `allow ${JSON.stringify(e.text)}: ${matchReason(e, what, port)}` };
      return rules.tokenAllow ? narrowAddress(d, rules.tokenAllow, n, ip, a, port) : d;
    }
  }
  return { allowed: false, code: "no_allow", rule: "default", reason: `no allow entry matches ${describe(n, a, port)}` };
}

// An allowed decision, checked against the token's list: the same matching as the
// allow side (port-qualified entries apply to a port-less resolve).
function narrowAddress(d: Decision, token: readonly Entry[], n: string | null, ip: IP, a: string, port: number | null): Decision {
  for (const e of token) {
    if (!allowPortMatch(e, port)) continue;
    const why = hostMatch(e, n, ip, a);
    if (why !== null) return { ...d, reason: `${d.reason}; token allow ${JSON.stringify(e.text)}: ${matchReason(e, why, port)}` };
  }
  return { allowed: false, code: "token", rule: TOKEN_ALLOW_RULE, reason: `no entry of the token's allow list matches ${describe(n, a, port)}` };
}

// The name-only counterpart: refuse before any look-up when no token entry could
// match, whatever the name resolves to.
function narrowName(d: Decision, token: readonly Entry[], n: string, port: number | null): Decision {
  let addressEntry = false;
  for (const e of token) {
    if (!allowPortMatch(e, port)) continue;
    if (e.host.kind === "name" || e.host.kind === "wildcard") {
      const why = hostMatch(e, n, null, null);
      if (why !== null) return { ...d, reason: `${d.reason}; token allow ${JSON.stringify(e.text)}: ${matchReason(e, why, port)}` };
    } else {
      addressEntry = true; // `*`, `nonpublic` or an address: decided on what the name resolves to
    }
  }
  if (addressEntry) return d;
  return { allowed: false, code: "token", rule: TOKEN_ALLOW_RULE, reason: `no entry of the token's allow list matches ${describe(n, null, port)}` };
}

/**
 * Name-only pre-check, before any DNS look-up. allowed=true means "not refused
 * by name, go resolve". Refuses when a name-matching deny entry matches, and
 * also when no allow entry could match whatever the name resolves to: under a
 * deny-by-default policy a client must not be able to make the server look up
 * arbitrary names (DNS is an exfiltration channel, and a wasted look-up).
 */
export function decideName(rules: RuleSet, name: string, port: number | null): Decision {
  const lit = canonicalIp(name);
  if (lit !== null) return decideAddress(rules, null, lit, port);
  const n = normalizeName(name);
  for (const e of rules.deny) {
    if (!canRefuseName(e) || !portMatch(e, port)) continue;
    const why = hostMatch(e, n, null, null);
    if (why !== null) {
      return { allowed: false, code: "deny", rule: e.text, reason: `deny ${JSON.stringify(e.text)}: ${matchReason(e, why, port)}` };
    }
  }
  let addressAllowPossible = false;
  for (const e of rules.allow) {
    if (!allowPortMatch(e, port)) continue;
    if (e.host.kind === "name" || e.host.kind === "wildcard") {
      const why = hostMatch(e, n, null, null);
      if (why !== null) {
        const d: Decision = {
          allowed: true,
          code: "allow",
          rule: e.text,
          reason: `allow ${JSON.stringify(e.text)}: ${matchReason(e, why, port)} (addresses still checked)`,
        };
        return rules.tokenAllow ? narrowName(d, rules.tokenAllow, n, port) : d;
      }
    } else {
      addressAllowPossible = true;
    }
  }
  if (!addressAllowPossible) {
    return { allowed: false, code: "no_allow", rule: "default", reason: `no allow entry matches ${describe(n, null, port)}` };
  }
  const d = { allowed: true, code: "allow" as const, rule: "default", reason: `${describe(n, null, port)} is not refused by name; addresses will be checked` };
  return rules.tokenAllow ? narrowName(d, rules.tokenAllow, n, port) : d;
}

/**
 * The connection target: the first address, in resolver order, that passes.
 * Returns it canonical, because that exact string is what must reach the
 * socket layer. Denied only when none passes.
 */
export function chooseAddress(rules: RuleSet, name: string | null, addrs: readonly string[], port: number | null): Choice {
  const denials: Decision[] = [];
  for (const raw of addrs) {
    const d = decideAddress(rules, name, raw, port);
    if (d.allowed) return { addr: canonicalIp(raw)!, decision: d };
    denials.push(d);
  }
  return { addr: null, decision: combineDenials(name, denials) };
}

/**
 * For `resolve`: the addresses (canonical, de-duplicated, resolver order) that
 * pass the rules with no port: port-qualified deny entries do not apply (there is
 * no port to match), port-qualified allow and token entries do (a name reachable
 * on some port may be looked up). Denied when the name is refused by name or
 * nothing passes.
 */
export function filterResolved(
  rules: RuleSet,
  name: string,
  addrs: readonly string[],
): { addrs: string[]; decision: Decision } {
  const byName = decideName(rules, name, null);
  if (!byName.allowed) return { addrs: [], decision: byName };
  const passed: string[] = [];
  const denials: Decision[] = [];
  let first: Decision | null = null;
  for (const raw of addrs) {
    const d = decideAddress(rules, name, raw, null);
    if (!d.allowed) {
      denials.push(d);
      continue;
    }
    const c = canonicalIp(raw)!;
    if (!passed.includes(c)) passed.push(c);
    first ??= d;
  }
  if (first === null) return { addrs: [], decision: combineDenials(name, denials) };
  const reason =
    denials.length === 0 ? first.reason : `${first.reason}; dropped: ${denials.map((d) => d.reason).join("; ")}`;
  return { addrs: passed, decision: { allowed: true, code: "allow", rule: first.rule, reason } };
}

function combineDenials(name: string | null, denials: Decision[]): Decision {
  const who = name === null ? "the destination" : normalizeName(name);
  if (denials.length === 0) return { allowed: false, code: "no_address", rule: "default", reason: `${who} has no addresses` };
  if (denials.length === 1) return denials[0]!;
  return {
    allowed: false,
    code: denials[0]!.code,
    rule: denials[0]!.rule,
    reason: `no address of ${who} passes: ${denials.map((d) => d.reason).join("; ")}`,
  };
}

/** Whether `addr` matches any of `entries` (IP/CIDR lists such as bind_addrs, trusted_proxies). */
export function addressListed(entries: readonly Entry[], addr: string): boolean {
  return entries.length > 0 && decideAddress({ deny: [], allow: [...entries] }, null, addr, null).allowed;
}
