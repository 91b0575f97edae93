// Minting tokens and key pairs: what `wasmnet token create` / `keygen` do, and what an app
// server written in TypeScript can call directly. Every claim is checked with the verifier's own
// rules, so a token this file makes is one the server accepts (given the same keys and clock).
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type JWK, SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from "jose";
import { TokenAllowError, parseTokenAllow } from "../policy/token-allow.ts";
import { checkProfileName, checkSubject } from "./claims.ts";
import { type AsymmetricAlg, checkHs256Secret, jwkAlgorithm } from "./keys.ts";

export interface CreateTokenOptions {
  secret?: Uint8Array; // HS256 shared secret (at least 32 bytes)
  privateJwk?: JWK; // EdDSA / ES256 private key with a `kid` (as `token keygen` writes it)
  sub: string;
  profile?: string;
  allow?: string[];
  ttlSecs: number;
  aud?: string;
  iss?: string;
  nowSecs?: number; // Unix seconds; default: the clock
}

export class TokenIssueError extends Error {
  override name = "TokenIssueError";
}

const fail = (msg: string): never => {
  throw new TokenIssueError(msg);
};

/** Sign a token; exactly one of `secret` and `privateJwk`. Sets iat, exp (= iat + ttl) and the claims given. */
export async function createToken(opts: CreateTokenOptions): Promise<string> {
  if ((opts.secret === undefined) === (opts.privateJwk === undefined)) fail("give exactly one of a secret (HS256) or a private key");
  const sub = checkSubject(opts.sub);
  if (!sub.ok) fail(sub.reason);
  if (!Number.isSafeInteger(opts.ttlSecs) || opts.ttlSecs <= 0) fail("the lifetime must be a positive whole number of seconds");
  const wasmnet: { profile?: string; allow?: string[] } = {};
  if (opts.profile !== undefined) {
    const p = checkProfileName(opts.profile);
    if (!p.ok) fail(p.reason);
    wasmnet.profile = opts.profile;
  }
  if (opts.allow !== undefined) {
    const problem = explainAllow(opts.allow);
    if (problem !== null) fail(problem);
    wasmnet.allow = [...opts.allow];
  }
  const now = Math.floor(opts.nowSecs ?? Date.now() / 1000);
  const jwt = new SignJWT(Object.keys(wasmnet).length > 0 ? { wasmnet } : {})
    .setSubject(opts.sub)
    .setIssuedAt(now)
    .setExpirationTime(now + opts.ttlSecs);
  if (opts.aud !== undefined) jwt.setAudience(opts.aud);
  if (opts.iss !== undefined) jwt.setIssuer(opts.iss);

  if (opts.secret !== undefined) {
    checkHs256Secret(opts.secret, null);
    return jwt.setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(opts.secret);
  }
  const jwk = opts.privateJwk as JWK;
  if (typeof jwk !== "object" || jwk === null) fail("the private key is not a JWK object");
  if (typeof jwk.d !== "string") fail('the key has no private part ("d"): give the private JWK, not the public one');
  if (typeof jwk.kid !== "string" || jwk.kid === "") fail('the private key has no "kid" (the server selects keys by kid)');
  let alg: AsymmetricAlg;
  try {
    alg = jwkAlgorithm(jwk as Record<string, unknown>, "the private key");
  } catch (e) {
    return fail((e as Error).message);
  }
  let key: CryptoKey | Uint8Array;
  try {
    const members: JWK = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, d: jwk.d };
    if (alg === "ES256") members.y = jwk.y;
    key = await importJWK(members, alg);
  } catch {
    return fail(`the private key is not a valid ${alg} key`);
  }
  return jwt.setProtectedHeader({ alg, kid: jwk.kid as string, typ: "JWT" }).sign(key);
}

/**
 * What is wrong with an allow list, in the parser's own words (it may quote the value: the
 * operator may see it, a client may not), or null when the verifier would accept it.
 */
function explainAllow(allow: unknown): string | null {
  try {
    parseTokenAllow(allow);
    return null;
  } catch (e) {
    if (!(e instanceof TokenAllowError)) throw e;
    return e.problem === "bad-entry" ? `allow: ${e.detail}` : e.message;
  }
}

export interface GeneratedKeys {
  alg: AsymmetricAlg;
  kid: string;
  privateFile: string;
  publicFile: string;
}

/**
 * A new key pair in `outDir`: `private.jwk.json` (mode 0600; for the app that signs tokens) and
 * `public.jwks.json` (for the server's `jwks_file`). The kid is the key's RFC 7638 thumbprint,
 * so two generated keys never share one. Refuses to overwrite either file: replacing a private
 * key by accident invalidates every token signed with it.
 */
export async function generateKeys(opts: { alg: AsymmetricAlg; outDir: string }): Promise<GeneratedKeys> {
  const { alg, outDir } = opts;
  if (alg !== "EdDSA" && alg !== "ES256") fail(`--alg must be EdDSA or ES256, got ${JSON.stringify(alg)}`);
  const privateFile = join(outDir, "private.jwk.json");
  const publicFile = join(outDir, "public.jwks.json");
  for (const f of [privateFile, publicFile]) if (existsSync(f)) fail(`${f} already exists; choose another --out directory`);
  const pair = await generateKeyPair(alg, { extractable: true });
  const priv = await exportJWK(pair.privateKey);
  const pub = await exportJWK(pair.publicKey);
  const kid = await calculateJwkThumbprint(pub);
  mkdirSync(outDir, { recursive: true });
  // "wx": fail rather than follow a file created since the check above.
  writeFileSync(privateFile, JSON.stringify({ ...priv, kid, alg }, null, 2) + "\n", { mode: 0o600, flag: "wx" });
  writeFileSync(publicFile, JSON.stringify({ keys: [{ ...pub, kid, alg, use: "sig" }] }, null, 2) + "\n", { flag: "wx" });
  return { alg, kid, privateFile, publicFile };
}

const DURATION = /^(\d+)([smhd])?$/;
const UNIT_SECS = { s: 1, m: 60, h: 3600, d: 86400 } as const;
const MAX_DURATION_SECS = 366 * 86400;

/** "30s", "15m", "2h", "1d" (a bare number is seconds) → seconds; positive, at most a year. */
export function parseDuration(text: string): number {
  const m = DURATION.exec(text.trim());
  if (m === null) fail(`bad duration ${JSON.stringify(text)}: use a number with s, m, h or d (e.g. 15m)`);
  const [, digits, unit] = m as RegExpExecArray;
  const secs = Number(digits) * UNIT_SECS[(unit ?? "s") as keyof typeof UNIT_SECS];
  if (secs <= 0 || secs > MAX_DURATION_SECS) fail(`bad duration ${JSON.stringify(text)}: must be between 1s and 366d`);
  return secs;
}
