// The one gate. Every open and every datagram — connect, connect_tls, connect_udp, send_to (by
// name and by IP, per datagram), bind and resolve, from every protocol adapter — asks here, and
// the socket layer accepts only what this module hands out: a `Cleared` target can be made
// nowhere else (test/gate.test.ts checks that), so the address that reaches Bun.connect,
// Bun.listen or a UDP send is always the one the policy judged.
//
// Order (docs/architecture.md#the-gate): name rules before any look-up, resolution with a
// timeout, then the address rules on every resolved address; the first address that passes is
// the one used, never a second look-up of the name (no DNS-rebinding gap).
import { canonicalIp, normalizeName } from "../policy/address.ts";
import { decideBind } from "../policy/bind.ts";
import { chooseAddress, decideAddress, decideName, filterResolved, type Decision, type RuleSet } from "../policy/decide.ts";
import type { PortRange } from "../policy/ports.ts";
import type { Entry } from "../policy/entry.ts";
import type { ErrorCode } from "../protocol/constants.ts";
import { resolveTarget, ResolveError, type Resolver } from "./resolve.ts";

declare const cleared: unique symbol;

/** A destination (or local address, for bind) the policy allowed. Only this module makes them. */
export interface Cleared {
  /** Canonical IP literal: the exact string handed to the socket layer. */
  readonly addr: string;
  readonly port: number;
  /** The name the client asked for (null for an IP literal it gave). */
  readonly name: string | null;
  /** The policy entry that allowed it. */
  readonly rule: string;
  readonly [cleared]: true;
}

/** What the gate needs to judge: the session's rules, the bind rules and a resolver. */
export interface GatePolicy {
  rules: RuleSet;
  bind: { bindPorts: PortRange[]; bindPortsText: string; bindAddrs: Entry[] };
  resolver: Resolver;
  dnsTimeoutMs: number;
  /** For an IP literal: the name this session resolved it from, so name rules still apply. */
  nameOf?: (ip: string) => string | undefined;
}

export type DestinationOp = "connect" | "connect_tls" | "connect_udp" | "send_to";

export type GateRequest =
  | { op: DestinationOp; host: string; port: number }
  | { op: "bind"; host: string; port: number }
  | { op: "resolve"; host: string };

/** A refusal by the policy: which entry decided, and why (for `denied`, the log and metrics). */
export type Refusal = Decision & { allowed: false };

export type Verdict<T> =
  | { ok: true; value: T; decision: Decision }
  | { ok: false; refused: Refusal }
  | { ok: false; refused?: undefined; code: ErrorCode; msg: string };

/** The allowed addresses of a `resolve`, and the name they belong to (null for a literal). */
export interface Resolved {
  name: string | null;
  addrs: string[];
}

/**
 * Look-ups a caller may have in flight at once (a session bounds those of resolve and send_to,
 * so a client cannot turn the server into a DNS load generator). Taken right before a look-up,
 * after the name rules; given back when it ends.
 */
export interface LookupBudget {
  tryTake(): boolean;
  give(): void;
  readonly max: number;
}

/**
 * Judge one request. Synchronous when no look-up is needed (bind, and every IP literal, which
 * keeps a UDP send_to to an address free of promise overhead); a Promise when a name must be
 * resolved first.
 */
export function pass(g: GatePolicy, req: { op: "bind"; host: string; port: number }): Verdict<Cleared>;
export function pass(g: GatePolicy, req: { op: "resolve"; host: string }, budget?: LookupBudget): Promise<Verdict<Resolved>> | Verdict<Resolved>;
export function pass(g: GatePolicy, req: { op: DestinationOp; host: string; port: number }, budget?: LookupBudget): Promise<Verdict<Cleared>> | Verdict<Cleared>;
export function pass(g: GatePolicy, req: GateRequest, budget?: LookupBudget): Promise<Verdict<Cleared | Resolved>> | Verdict<Cleared | Resolved> {
  if (req.op === "bind") return bind(g, req.host, req.port);
  if (req.op === "resolve") return resolve(g, req.host, budget);
  return destination(g, req.host, req.port, budget);
}

function clear(addr: string, port: number, name: string | null, rule: string): Cleared {
  return { addr, port, name, rule } as Cleared;
}

function refused(d: Decision): { ok: false; refused: Refusal } {
  return { ok: false, refused: d as Refusal };
}

function destination(g: GatePolicy, host: string, port: number, budget?: LookupBudget): Verdict<Cleared> | Promise<Verdict<Cleared>> {
  const literal = canonicalIp(host);
  if (literal !== null) return choose(g, g.nameOf?.(literal) ?? null, [literal], port);
  // A name refused by a name rule is refused before anything is looked up.
  const byName = decideName(g.rules, normalizeName(host), port);
  if (!byName.allowed) return refused(byName);
  const r = lookUp(g, host, budget);
  return "then" in r ? r.then((r) => ("addrs" in r ? choose(g, r.name, r.addrs, port) : r)) : r;
}

function choose(g: GatePolicy, name: string | null, addrs: string[], port: number): Verdict<Cleared> {
  const c = chooseAddress(g.rules, name, addrs, port);
  if (c.addr === null) return refused(c.decision);
  return { ok: true, value: clear(c.addr, port, name, c.decision.rule), decision: c.decision };
}

function bind(g: GatePolicy, host: string, port: number): Verdict<Cleared> {
  const d = decideBind(g.bind, host, port);
  if (!d.allowed) return refused(d);
  return { ok: true, value: clear(canonicalIp(host)!, port, null, d.rule), decision: d };
}

function resolve(g: GatePolicy, host: string, budget?: LookupBudget): Verdict<Resolved> | Promise<Verdict<Resolved>> {
  const literal = canonicalIp(host);
  if (literal !== null) {
    const d = decideAddress(g.rules, null, literal, null);
    return d.allowed ? { ok: true, value: { name: null, addrs: [literal] }, decision: d } : refused(d);
  }
  const byName = decideName(g.rules, normalizeName(host), null);
  if (!byName.allowed) return refused(byName);
  const r = lookUp(g, host, budget);
  if (!("then" in r)) return r;
  return r.then((r) => {
    if (!("addrs" in r)) return r;
    const f = filterResolved(g.rules, r.name!, r.addrs);
    return f.decision.allowed ? { ok: true, value: { name: r.name, addrs: f.addrs }, decision: f.decision } : refused(f.decision);
  });
}

type Failure = { ok: false; refused?: undefined; code: ErrorCode; msg: string };

function lookUp(g: GatePolicy, host: string, budget?: LookupBudget): Promise<Resolved | Failure> | Failure {
  if (budget && !budget.tryTake()) return { ok: false, code: "ELIMIT", msg: `${budget.max} name look-ups already in flight` };
  // The slot comes back when the look-up ends, not when its timeout does: the resolver goes on.
  const ended = budget ? () => budget.give() : undefined;
  return resolveTarget(host, g.resolver, g.dnsTimeoutMs, ended).catch((e): Failure => {
    const err = e instanceof ResolveError ? e : new ResolveError("ENOTFOUND", String(e));
    return { ok: false, code: err.code, msg: err.message };
  });
}
