// A token's `wasmnet.allow` claim: policy entries, written by the operator's app, that narrow
// what its user may reach (see withTokenAllow in decide.ts). The claim comes from JSON, so
// anything can be in it; a bad entry refuses the token rather than being skipped, since a
// dropped narrowing entry would make the rest of the list mean something else. This is the one
// parser of the claim: the verifier, the token issuer and `policy check --token` all use it.
import { type Entry, PolicyEntryError, parseEntry } from "./entry.ts";

export const MAX_ALLOW_ENTRIES = 64;
// Longer than any valid entry (a 253-character name and a port range); refused before parsing
// so the error, which may go back to the client, stays short.
export const MAX_ALLOW_ENTRY_CHARS = 270;

/** What was wrong, so a caller can answer with its own fixed wording. */
export type TokenAllowProblem = "not-a-list" | "too-many" | "not-a-string" | "too-long" | "bad-entry";

export class TokenAllowError extends Error {
  override name = "TokenAllowError";
  constructor(
    readonly problem: TokenAllowProblem,
    readonly index: number | null, // the bad entry's position; null when the list as a whole is wrong
    readonly detail: string,
  ) {
    super(index === null ? `wasmnet.allow: ${detail}` : `wasmnet.allow[${index}]: ${detail}`);
  }
}

const shown = (v: unknown): string => (typeof v === "string" ? JSON.stringify(v.slice(0, 64)) : Array.isArray(v) ? "an array" : v === null ? "null" : typeof v);

/** The claim's entries; throws TokenAllowError naming the first bad one (its message may quote the value). */
export function parseTokenAllow(claim: unknown): Entry[] {
  if (!Array.isArray(claim)) throw new TokenAllowError("not-a-list", null, `expected an array of policy entries, got ${shown(claim)}`);
  if (claim.length > MAX_ALLOW_ENTRIES) throw new TokenAllowError("too-many", null, `${claim.length} entries is more than ${MAX_ALLOW_ENTRIES}`);
  return claim.map((item, i) => {
    if (typeof item !== "string") throw new TokenAllowError("not-a-string", i, `expected a string, got ${shown(item)}`);
    if (item.length > MAX_ALLOW_ENTRY_CHARS) throw new TokenAllowError("too-long", i, `entry of ${item.length} characters is longer than any valid entry`);
    try {
      return parseEntry(item);
    } catch (e) {
      if (e instanceof PolicyEntryError) throw new TokenAllowError("bad-entry", i, e.message);
      throw e;
    }
  });
}
