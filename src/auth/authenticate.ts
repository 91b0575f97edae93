// One decision for an upgrade request: who is it (or anonymous), or the HTTP answer refusing it.
// Ties the transport forms to the verifier so every endpoint applies the same rules:
//   - no token: anonymous when `required` is false, else 401;
//   - a token, good: its identity; a token, bad: refused even when `required` is false (a
//     client that sent a token meant to be someone; quietly making it anonymous would hide an
//     expired or mis-signed token behind weaker limits);
//   - conflicting tokens: 401 (see transport.ts).
import type { Entry } from "../policy/entry.ts";
import type { AuthConfig } from "./config.ts";
import type { KeyRing } from "./keys.ts";
import { tokenFromRequest } from "./transport.ts";
import { verifyToken, wwwAuthenticate } from "./verify.ts";

export type AuthOutcome =
  | {
      ok: true;
      identity: string | null; // `sub`; null: anonymous (key limits by client IP)
      profile: string | null;
      allow: Entry[] | null; // the token's wasmnet.allow, parsed; null: no narrowing
      protocols: string[]; // offered subprotocols without bearer entries
    }
  | { ok: false; status: 401 | 431; description: string; protocols: string[] };

export async function authenticateRequest(req: Request, auth: AuthConfig, keys: KeyRing, nowSecs?: number): Promise<AuthOutcome> {
  const { token, protocols, problem } = tokenFromRequest(req);
  if (problem !== null) return { ok: false, status: 401, description: problem, protocols };
  if (token === null) {
    if (auth.required) return { ok: false, status: 401, description: "a token is required", protocols };
    return { ok: true, identity: null, profile: null, allow: null, protocols };
  }
  const v = await verifyToken(token, auth, keys, nowSecs);
  if (!v.ok) return { ...v, protocols };
  return { ok: true, identity: v.identity, profile: v.profile, allow: v.allow, protocols };
}

/** The HTTP response refusing an upgrade: 401 with a Bearer challenge, or 431. */
export function authFailureResponse(failure: { status: 401 | 431; description: string }): Response {
  const headers: Record<string, string> = {
    "content-type": "text/plain; charset=utf-8",
    "cache-control": "no-store",
    // A page on another origin may read why (the browser client's EAUTH): the reason is no secret.
    "access-control-allow-origin": "*",
    "access-control-expose-headers": "WWW-Authenticate",
  };
  if (failure.status === 401) headers["www-authenticate"] = wwwAuthenticate(failure.description);
  return new Response(`${failure.description}\n`, { status: failure.status, headers });
}
