// Key material for verifying tokens: an HS256 shared secret and a JWKS of public keys (EdDSA
// Ed25519, ES256 P-256), read once into a KeyRing. Reload builds a new ring and swaps it in
// whole, so a request never sees half of an old key set and half of a new one; a JWKS holding an
// old and a new key verifies tokens signed with either (rotation).
import { readFileSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import { type JWK, importJWK } from "jose";
import type { AuthConfig } from "./config.ts";

export type AsymmetricAlg = "EdDSA" | "ES256";
export type TokenAlg = "HS256" | AsymmetricAlg;

export const MIN_HS256_SECRET_BYTES = 32;
const MAX_KID_CHARS = 256;
const MAX_JWKS_KEYS = 100;

export interface PublicKeyEntry {
  kid: string;
  alg: AsymmetricAlg;
  key: CryptoKey;
}

export interface KeyRing {
  hs256: CryptoKey | null;
  publicKeys: ReadonlyMap<string, PublicKeyEntry>; // by kid
  /** What the verifier accepts: HS256 only with a secret, EdDSA/ES256 only with such a key. */
  algorithms: readonly TokenAlg[];
  /** Absolute paths the ring was read from (for log lines; never the contents). */
  sources: { hs256SecretFile: string | null; jwksFile: string | null };
}

export const EMPTY_KEY_RING: KeyRing = Object.freeze({
  hs256: null,
  publicKeys: new Map(),
  algorithms: Object.freeze([]) as readonly TokenAlg[],
  sources: Object.freeze({ hs256SecretFile: null, jwksFile: null }),
});

export class AuthKeyError extends Error {
  override name = "AuthKeyError";
  constructor(
    readonly file: string | null,
    detail: string,
  ) {
    super(file === null ? detail : `${file}: ${detail}`);
  }
}

/**
 * The secret's bytes. A text secret (`openssl rand -base64 48 > secret.key`) loses one trailing
 * newline (LF or CRLF), as editors and `echo` add one. A binary secret (`head -c 32 /dev/urandom`)
 * is taken byte for byte: its last byte is 0x0a one time in 256, and trimming it would leave a
 * different key than the one the application signs with (or one too short to load).
 */
export function readHs256Secret(file: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(file));
  } catch (e) {
    throw new AuthKeyError(file, `cannot read the HS256 secret: ${(e as Error).message}`);
  }
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0a) end--;
  if (end > 0 && bytes[end - 1] === 0x0d) end--;
  const secret = end < bytes.length && isText(bytes.subarray(0, end)) ? bytes.slice(0, end) : bytes;
  checkHs256Secret(secret, file);
  return secret;
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** Valid UTF-8 with no control characters: what a person or `openssl rand -base64` writes. */
function isText(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b < 0x20 || b === 0x7f) return false;
  try {
    UTF8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

export function checkHs256Secret(secret: Uint8Array, file: string | null): void {
  if (secret.length < MIN_HS256_SECRET_BYTES) {
    throw new AuthKeyError(
      file,
      `the HS256 secret is ${secret.length} bytes; at least ${MIN_HS256_SECRET_BYTES} are needed (e.g. openssl rand -base64 48)`,
    );
  }
}

/** A verify-only, non-extractable key: the ring can check tokens but never mint one. */
export async function importHs256Secret(secret: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", secret as Uint8Array<ArrayBuffer>, { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
}

/** A public key from a JWKS, checked but not yet imported. */
export interface PublicJwk {
  kid: string;
  alg: AsymmetricAlg;
  jwk: JWK; // only the public members: kty, crv, x (and y)
}

const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "k"];
const B64URL_32_BYTES = /^[A-Za-z0-9_-]{43}$/;

/**
 * Which algorithm a JWK is for, from its kty/crv (and its `alg`, which must agree when present).
 * Throws a message naming what is wrong; `where` prefixes it ("key 2", "key \"kid\"").
 */
export function jwkAlgorithm(jwk: Record<string, unknown>, where: string): AsymmetricAlg {
  const { kty, crv, alg } = jwk;
  let expected: AsymmetricAlg;
  if (kty === "OKP") {
    if (crv !== "Ed25519") throw new Error(`${where}: OKP curve ${JSON.stringify(crv)} is not supported (only Ed25519)`);
    expected = "EdDSA";
  } else if (kty === "EC") {
    if (crv !== "P-256") throw new Error(`${where}: EC curve ${JSON.stringify(crv)} is not supported (only P-256)`);
    expected = "ES256";
  } else if (kty === "oct") {
    throw new Error(`${where}: symmetric keys do not belong in a JWKS (use hs256_secret_file)`);
  } else {
    throw new Error(`${where}: key type ${JSON.stringify(kty)} is not supported (OKP Ed25519 or EC P-256)`);
  }
  if (alg !== undefined && alg !== expected) {
    throw new Error(`${where}: "alg" is ${JSON.stringify(alg)} but a ${kty} ${crv} key is for ${expected}`);
  }
  return expected;
}

/** Validate a JWKS document: public signature keys only, each with a unique kid. Pure. */
export function parseJwks(text: string, file: string): PublicJwk[] {
  const fail = (detail: string): never => {
    throw new AuthKeyError(file, detail);
  };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    fail("not valid JSON");
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) fail('a JWKS must be a JSON object with a "keys" array');
  const keys = (doc as { keys?: unknown }).keys;
  if (!Array.isArray(keys)) fail('a JWKS must be a JSON object with a "keys" array');
  const list = keys as unknown[];
  if (list.length === 0) fail("the JWKS has no keys");
  if (list.length > MAX_JWKS_KEYS) fail(`the JWKS has more than ${MAX_JWKS_KEYS} keys`);
  const seen = new Set<string>();
  const out: PublicJwk[] = [];
  list.forEach((raw, i) => {
    const where = `key ${i + 1}`;
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) fail(`${where}: not a JSON object`);
    const jwk = raw as Record<string, unknown>;
    const { kid, use, key_ops: keyOps } = jwk;
    if (typeof kid !== "string" || kid === "") fail(`${where}: "kid" is missing (every key needs one: tokens select their key by kid)`);
    const k = kid as string;
    if (k.length > MAX_KID_CHARS) fail(`${where}: "kid" is longer than ${MAX_KID_CHARS} characters`);
    if (seen.has(k)) fail(`${where}: duplicate kid ${JSON.stringify(k)}`);
    seen.add(k);
    const named = `key ${JSON.stringify(k)}`;
    for (const m of PRIVATE_MEMBERS) {
      if (m in jwk) fail(`${named}: contains private key material ("${m}"); publish only public keys here`);
    }
    let alg: AsymmetricAlg;
    try {
      alg = jwkAlgorithm(jwk, named);
    } catch (e) {
      return fail((e as Error).message);
    }
    if (use !== undefined && use !== "sig") fail(`${named}: "use" is ${JSON.stringify(use)}, expected "sig"`);
    if (keyOps !== undefined && !(Array.isArray(keyOps) && keyOps.includes("verify"))) fail(`${named}: "key_ops" does not include "verify"`);
    const coords = alg === "ES256" ? ["x", "y"] : ["x"];
    for (const c of coords) {
      if (typeof jwk[c] !== "string" || !B64URL_32_BYTES.test(jwk[c] as string)) fail(`${named}: "${c}" is not a 32-byte base64url value`);
    }
    const pub: JWK = { kty: jwk.kty as string, crv: jwk.crv as string, x: jwk.x as string };
    if (alg === "ES256") pub.y = jwk.y as string;
    out.push({ kid: k, alg, jwk: pub });
  });
  return out;
}

export async function importPublicJwk(entry: PublicJwk, file: string): Promise<PublicKeyEntry> {
  try {
    const key = await importJWK(entry.jwk, entry.alg);
    if (!(key instanceof CryptoKey)) throw new Error("not an asymmetric key");
    return { kid: entry.kid, alg: entry.alg, key };
  } catch {
    throw new AuthKeyError(file, `key ${JSON.stringify(entry.kid)}: not a valid ${entry.alg} public key`);
  }
}

export interface LoadKeyRingOptions {
  /** Relative key file paths are taken from here (the policy file's directory); default: cwd. */
  baseDir?: string;
}

/**
 * Read and import the key files named in `auth`. Throws AuthKeyError on any problem, so a
 * reload that fails keeps the ring in service. Also refuses configurations that cannot work:
 * a key without an audience (a token for another service would be accepted), and `required`
 * with no key (every request would be refused).
 */
export async function loadKeyRing(auth: AuthConfig, opts: LoadKeyRingOptions = {}): Promise<KeyRing> {
  const base = opts.baseDir ?? process.cwd();
  const secretFile = auth.hs256SecretFile === null ? null : resolvePath(base, auth.hs256SecretFile);
  const jwksFile = auth.jwksFile === null ? null : resolvePath(base, auth.jwksFile);
  if ((secretFile !== null || jwksFile !== null) && (auth.audience === null || auth.audience === "")) {
    throw new AuthKeyError(null, "[auth] audience is required when hs256_secret_file or jwks_file is set");
  }
  if (auth.required && secretFile === null && jwksFile === null) {
    throw new AuthKeyError(null, "[auth] required = true needs hs256_secret_file or jwks_file (no token could be verified)");
  }
  const hs256 = secretFile === null ? null : await importHs256Secret(readHs256Secret(secretFile));
  const publicKeys = new Map<string, PublicKeyEntry>();
  if (jwksFile !== null) {
    let text: string;
    try {
      text = readFileSync(jwksFile, "utf8");
    } catch (e) {
      throw new AuthKeyError(jwksFile, `cannot read the JWKS: ${(e as Error).message}`);
    }
    for (const entry of parseJwks(text, jwksFile)) publicKeys.set(entry.kid, await importPublicJwk(entry, jwksFile));
  }
  const algorithms: TokenAlg[] = [];
  if (hs256 !== null) algorithms.push("HS256");
  for (const alg of ["EdDSA", "ES256"] as const) {
    if ([...publicKeys.values()].some((k) => k.alg === alg)) algorithms.push(alg);
  }
  return { hs256, publicKeys, algorithms, sources: { hs256SecretFile: secretFile, jwksFile } };
}

/** One line for logs: which algorithms and key ids are in service (never key material). */
export function describeKeyRing(ring: KeyRing): string {
  if (ring.algorithms.length === 0) return "no keys";
  const parts: string[] = [];
  if (ring.hs256 !== null) parts.push("HS256 secret");
  for (const k of ring.publicKeys.values()) parts.push(`${k.alg} kid ${JSON.stringify(k.kid)}`);
  return parts.join(", ");
}
