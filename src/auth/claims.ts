// The claims wasmnet reads from a token, and their bounds. Pure checks shared by the verifier
// (a token from the outside) and the issuer (so `wasmnet token create` cannot mint a token the
// server would refuse). Every failure is a short reason that never quotes the offending value:
// reasons are sent to the client and logged, and claim values come from the token.
import type { Entry } from "../policy/entry.ts";
import { MAX_ALLOW_ENTRIES, MAX_ALLOW_ENTRY_CHARS, TokenAllowError, type TokenAllowProblem, parseTokenAllow } from "../policy/token-allow.ts";

/** A token longer than this is refused with 431 before any decoding. */
export const MAX_TOKEN_BYTES = 8 * 1024;
export const MAX_SUB_CHARS = 256;
export const MAX_PROFILE_CHARS = 64;

const PROFILE_NAME = /^[a-z0-9_-]+$/;

/** The private claim `wasmnet`: which profile the identity uses and how the token narrows it. */
export interface WasmnetClaim {
  profile: string | null;
  allow: Entry[] | null; // parsed: the server narrows by these, no second parse
}

export type ClaimCheck<T> = { ok: true; value: T } | { ok: false; reason: string };

export function checkSubject(sub: unknown): ClaimCheck<string> {
  if (sub === undefined) return { ok: false, reason: 'missing "sub" claim' };
  if (typeof sub !== "string") return { ok: false, reason: '"sub" claim must be a string' };
  if (sub === "") return { ok: false, reason: '"sub" claim is empty' };
  if (sub.length > MAX_SUB_CHARS) return { ok: false, reason: `"sub" claim is longer than ${MAX_SUB_CHARS} characters` };
  return { ok: true, value: sub };
}

export function checkProfileName(profile: unknown): ClaimCheck<string> {
  if (typeof profile !== "string") return { ok: false, reason: "wasmnet.profile must be a string" };
  if (profile.length === 0 || profile.length > MAX_PROFILE_CHARS) {
    return { ok: false, reason: `wasmnet.profile must be 1-${MAX_PROFILE_CHARS} characters` };
  }
  if (!PROFILE_NAME.test(profile)) return { ok: false, reason: "wasmnet.profile may contain only a-z, 0-9, _ and -" };
  return { ok: true, value: profile };
}

/**
 * Each entry must be a policy entry the server can parse: a narrowing it cannot read is refused,
 * not ignored. The reason is fixed wording (the parser's own message quotes the value).
 */
export function checkAllowList(allow: unknown): ClaimCheck<Entry[]> {
  try {
    return { ok: true, value: parseTokenAllow(allow) };
  } catch (e) {
    if (!(e instanceof TokenAllowError)) throw e;
    return { ok: false, reason: ALLOW_REASON[e.problem](e.index ?? 0) };
  }
}

const ALLOW_REASON: Record<TokenAllowProblem, (i: number) => string> = {
  "not-a-list": () => "wasmnet.allow must be an array of strings",
  "too-many": () => `wasmnet.allow has more than ${MAX_ALLOW_ENTRIES} entries`,
  "not-a-string": (i) => `wasmnet.allow[${i}] must be a string`,
  "too-long": (i) => `wasmnet.allow[${i}] is longer than ${MAX_ALLOW_ENTRY_CHARS} characters`,
  "bad-entry": (i) => `wasmnet.allow[${i}] is not a valid policy entry`,
};

/**
 * The `wasmnet` claim: absent, or an object with only `profile` and `allow`. Unknown keys are
 * refused rather than ignored: a later version may add a key that narrows further, and a server
 * that skipped it would grant more than the issuer meant.
 */
export function checkWasmnetClaim(claim: unknown): ClaimCheck<WasmnetClaim> {
  if (claim === undefined) return { ok: true, value: { profile: null, allow: null } };
  if (claim === null || typeof claim !== "object" || Array.isArray(claim)) {
    return { ok: false, reason: '"wasmnet" claim must be an object' };
  }
  const obj = claim as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (key !== "profile" && key !== "allow") return { ok: false, reason: '"wasmnet" claim has an unknown key' };
  }
  let profile: string | null = null;
  if (obj.profile !== undefined) {
    const p = checkProfileName(obj.profile);
    if (!p.ok) return p;
    profile = p.value;
  }
  let allow: Entry[] | null = null;
  if (obj.allow !== undefined) {
    const a = checkAllowList(obj.allow);
    if (!a.ok) return a;
    allow = a.value;
  }
  return { ok: true, value: { profile, allow } };
}
