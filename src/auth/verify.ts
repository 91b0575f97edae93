// Verify a bearer token: signature with a configured key, then the registered claims (`exp`
// required, `nbf`, `aud`, `iss`, `sub` required) and the `wasmnet` claim. The cryptography and
// the registered-claim checks are jose's; this file decides which keys and algorithms are in
// play, adds wasmnet's own bounds, and turns every failure into a short reason that is safe to
// send to the client (fixed wording, never a piece of the token).
import { type JWTPayload, type JWTVerifyOptions, decodeProtectedHeader, errors, jwtVerify } from "jose";
import type { Entry } from "../policy/entry.ts";
import { MAX_TOKEN_BYTES, checkSubject, checkWasmnetClaim } from "./claims.ts";
import type { AuthConfig } from "./config.ts";
import type { KeyRing } from "./keys.ts";

export type VerifyResult =
  | { ok: true; identity: string; profile: string | null; allow: Entry[] | null; expiresAt: number }
  | { ok: false; status: 401 | 431; description: string };

type Failure = Extract<VerifyResult, { ok: false }>;

const refuse = (description: string): Failure => ({ ok: false, status: 401, description });

// Three base64url segments; checked before anything is decoded so malformed input gets one
// plain answer and never reaches a decoder.
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** A reason from key selection, thrown inside jose's key callback and passed through as is. */
class KeySelectionError extends Error {}

/**
 * Verify `token` against `keys` under `auth`. Never throws. `nowSecs` (Unix seconds) replaces
 * the clock, for tests and for the policy checker.
 */
export async function verifyToken(token: string, auth: AuthConfig, keys: KeyRing, nowSecs?: number): Promise<VerifyResult> {
  // Length first: an oversized token is refused before a single byte of it is parsed. Tokens
  // that pass the pattern below are ASCII, so characters are bytes.
  if (token.length > MAX_TOKEN_BYTES) return { ok: false, status: 431, description: "token is larger than 8 KiB" };
  if (token === "") return refuse("token is empty");
  if (!COMPACT_JWS.test(token)) {
    return refuse(token.split(".").length !== 3 ? "malformed token: expected three dot-separated parts" : "malformed token: not base64url");
  }
  if (keys.algorithms.length === 0) return refuse("no token keys are configured");

  const options: JWTVerifyOptions = {
    algorithms: [...keys.algorithms],
    requiredClaims: ["exp", "sub"],
    clockTolerance: auth.leewaySecs,
  };
  if (auth.audience !== null) options.audience = auth.audience;
  if (auth.issuers !== null) options.issuer = auth.issuers;
  if (nowSecs !== undefined) options.currentDate = new Date(nowSecs * 1000);

  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, (header) => selectKey(header, keys), options));
  } catch (e) {
    return refuse(describeFailure(e, token));
  }

  // jose checked that `exp` is a number and not past; JSON can still say 1e400 (Infinity).
  if (!Number.isFinite(payload.exp)) return refuse('"exp" claim must be a finite number');
  const sub = checkSubject(payload.sub);
  if (!sub.ok) return refuse(sub.reason);
  const claim = checkWasmnetClaim(payload.wasmnet);
  if (!claim.ok) return refuse(claim.reason);
  return { ok: true, identity: sub.value, profile: claim.value.profile, allow: claim.value.allow, expiresAt: payload.exp as number };
}

/**
 * The key for a token's header. jose has already refused any `alg` outside the ring's list, so
 * HS256 here means a secret is loaded, and an asymmetric alg means the JWKS has such keys. A
 * `kid` is required for asymmetric keys and must name a key of the token's algorithm, so a
 * token cannot pick a key of another type (the other half of algorithm confusion).
 */
function selectKey(header: { alg?: string; kid?: string }, keys: KeyRing): CryptoKey {
  if (header.alg === "HS256") {
    if (keys.hs256 === null) throw new KeySelectionError("algorithm not accepted");
    return keys.hs256;
  }
  if (typeof header.kid !== "string") throw new KeySelectionError('token header has no "kid"');
  const entry = keys.publicKeys.get(header.kid);
  if (entry === undefined) throw new KeySelectionError("unknown key id");
  if (entry.alg !== header.alg) throw new KeySelectionError("key id is for another algorithm");
  return entry.key;
}

function describeFailure(e: unknown, token: string): string {
  if (e instanceof KeySelectionError) return e.message;
  if (e instanceof errors.JWTExpired) return "token has expired";
  if (e instanceof errors.JWTClaimValidationFailed) {
    if (e.reason === "missing") return `missing "${e.claim}" claim`;
    if (e.reason === "invalid") return `"${e.claim}" claim must be a number`;
    if (e.claim === "nbf") return "token is not yet valid";
    if (e.claim === "aud") return "token is for another audience";
    if (e.claim === "iss") return "token issuer is not accepted";
    return "a claim check failed";
  }
  if (e instanceof errors.JOSEAlgNotAllowed) return `algorithm ${safeAlg(token)}not accepted`;
  if (e instanceof errors.JWSSignatureVerificationFailed) return "signature does not verify";
  if (e instanceof errors.JOSENotSupported) return "token uses an unsupported header feature";
  if (e instanceof errors.JWTInvalid || e instanceof errors.JWSInvalid) {
    if (/Claims Set/.test(e.message)) return "claims are not a JSON object";
    if (/Protected Header/.test(e.message)) return "header is not a JSON object";
    if (/unencoded payload/i.test(e.message)) return "unencoded payloads are not accepted";
    if (/"alg"/.test(e.message)) return 'header has no valid "alg"';
    return "malformed token";
  }
  return "token could not be verified";
}

/** The header's alg, quoted, when it is a plain short name (so it can be named in a reason). */
function safeAlg(token: string): string {
  try {
    const { alg } = decodeProtectedHeader(token);
    return typeof alg === "string" && /^[A-Za-z0-9]{1,16}$/.test(alg) ? `"${alg}" ` : "";
  } catch {
    return "";
  }
}

const MAX_DESCRIPTION_CHARS = 200;

/**
 * The `WWW-Authenticate` value for a refused token (RFC 6750). The description is written as
 * an HTTP quoted-string: `"` and `\` are backslash-escaped; control characters and non-ASCII
 * cannot appear in a header at all, so they become spaces; long text is cut.
 */
export function wwwAuthenticate(description: string): string {
  const text = description
    .slice(0, MAX_DESCRIPTION_CHARS)
    .replace(/[^\x20-\x7e]/g, " ")
    .replace(/["\\]/g, (c) => `\\${c}`);
  return `Bearer error="invalid_token", error_description="${text}"`;
}
