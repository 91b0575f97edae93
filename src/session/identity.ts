// Who a session belongs to. Every per-identity limit is keyed by `key`; the hello answer and the
// audit lines carry `name` and `profile`.
import type { Entry } from "../policy/entry.ts";

export interface Identity {
  /** What limits count under: `sub:<sub>` for a token, `ip:<addr>` when anonymous, `wisp:<user>` for a Wisp login. */
  key: string;
  /** The token's `sub` (or the Wisp user); null when anonymous. */
  name: string | null;
  /** The profile the session runs under; null for the top-level policy. */
  profile: string | null;
  /** The token's `wasmnet.allow` entries: a destination must match one as well. Null: no narrowing. */
  allow: readonly Entry[] | null;
}

/** Anonymous sessions are keyed by the client's address (after trusted proxies). */
export function anonymous(remote: string): Identity {
  return { key: `ip:${remote}`, name: null, profile: null, allow: null };
}
