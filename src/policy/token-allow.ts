// A token's `wasmnet.allow` claim: policy entries, written by the operator's app, that narrow
// what its user may reach (see withTokenAllow in decide.ts). The claim comes from JSON, so
// anything can be in it; a bad entry refuses the token rather than being skipped, since a
// dropped narrowing entry would make the rest of the list mean something else.
import { type Entry, PolicyEntryError, parseEntry } from "./entry.ts";

export class TokenAllowError extends Error {
  override name = "TokenAllowError";
  constructor(
    readonly index: number | null, // the bad entry's position; null when the claim is not a list
    detail: string,
  ) {
    super(index === null ? `wasmnet.allow: ${detail}` : `wasmnet.allow[${index}]: ${detail}`);
  }
}

const MAX_ENTRY_CHARS = 270;

const shown = (v: unknown): string => (typeof v === "string" ? JSON.stringify(v.slice(0, 64)) : Array.isArray(v) ? "an array" : v === null ? "null" : typeof v);

/** The claim's entries; throws TokenAllowError naming the first bad one. */
export function parseTokenAllow(claim: unknown): Entry[] {
  if (!Array.isArray(claim)) throw new TokenAllowError(null, `expected an array of policy entries, got ${shown(claim)}`);
  return claim.map((item, i) => {
    if (typeof item !== "string") throw new TokenAllowError(i, `expected a string, got ${shown(item)}`);
    // Longer than any valid entry (a 253-character name and a port range); refused before
    // parsing so the error, which goes back to the client, stays short.
    if (item.length > MAX_ENTRY_CHARS) throw new TokenAllowError(i, `entry of ${item.length} characters is longer than any valid entry`);
    try {
      return parseEntry(item);
    } catch (e) {
      if (e instanceof PolicyEntryError) throw new TokenAllowError(i, e.message);
      throw e;
    }
  });
}
