// Token verification with real signatures (HS256, EdDSA, ES256): what is accepted, every way a
// token is refused and why, and the key files the verifier trusts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type JWK, SignJWT, importJWK } from "jose";
import type { AuthConfig } from "../src/auth/config.ts";
import { createToken, generateKeys } from "../src/auth/issue.ts";
import { AuthKeyError, EMPTY_KEY_RING, type KeyRing, describeKeyRing, loadKeyRing } from "../src/auth/keys.ts";
import { type VerifyResult, verifyToken, wwwAuthenticate } from "../src/auth/verify.ts";

const NOW = 1_800_000_000;
const AUD = "wasmnet";
const enc = new TextEncoder();
const b64 = (x: string | Uint8Array) => Buffer.from(x).toString("base64url");

let dir: string;
let secret: Uint8Array;
let secretFile: string;
let ed: { kid: string; priv: JWK; publicFile: string };
let es: { kid: string; priv: JWK; publicFile: string };
let bothJwks: string; // EdDSA + ES256 public keys
let ring: KeyRing; // HS256 + EdDSA + ES256

const auth = (over: Partial<AuthConfig> = {}): AuthConfig => ({
  required: true,
  audience: AUD,
  issuers: null,
  hs256SecretFile: secretFile,
  jwksFile: bothJwks,
  leewaySecs: 30,
  ...over,
});

async function keyPair(alg: "EdDSA" | "ES256", sub: string) {
  const k = await generateKeys({ alg, outDir: join(dir, sub) });
  return { kid: k.kid, priv: JSON.parse(readFileSync(k.privateFile, "utf8")) as JWK, publicFile: k.publicFile };
}

const publicKeys = (file: string): JWK[] => JSON.parse(readFileSync(file, "utf8")).keys;

function writeJwks(name: string, keys: unknown[]): string {
  const f = join(dir, name);
  writeFileSync(f, JSON.stringify({ keys }));
  return f;
}

/** HS256 over arbitrary header and payload text: for tokens no well-behaved library would make. */
async function hmacToken(header: unknown, payloadText: string, key: Uint8Array = secret): Promise<string> {
  const input = `${b64(JSON.stringify(header))}.${b64(payloadText)}`;
  const k = await crypto.subtle.importKey("raw", key as Uint8Array<ArrayBuffer>, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return `${input}.${b64(new Uint8Array(await crypto.subtle.sign("HMAC", k, enc.encode(input))))}`;
}

const claims = (over: Record<string, unknown> = {}) => JSON.stringify({ sub: "alice", aud: AUD, exp: NOW + 600, iat: NOW, ...over });
const hs = (over: Record<string, unknown> = {}) => hmacToken({ alg: "HS256", typ: "JWT" }, claims(over));

async function signWith(priv: JWK, payload: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  const alg = priv.alg as string;
  return new SignJWT(payload).setProtectedHeader({ alg, kid: priv.kid, ...header }).sign(await importJWK(priv, alg));
}

const verify = (token: string, over: Partial<AuthConfig> = {}, keys: KeyRing = ring, now = NOW) => verifyToken(token, auth(over), keys, now);
/** A verify result with its parsed allow entries written back as their text, to compare with a claim. */
const asWritten = (r: VerifyResult) => (r.ok && r.allow !== null ? { ...r, allow: r.allow.map((e) => e.text) } : r);

async function refused(token: string, reason: RegExp | string, over: Partial<AuthConfig> = {}, keys: KeyRing = ring, now = NOW) {
  const r = await verify(token, over, keys, now);
  expect(r.ok).toBe(false);
  if (r.ok) return;
  expect(r.status).toBe(401);
  if (typeof reason === "string") expect(r.description).toBe(reason);
  else expect(r.description).toMatch(reason);
  // Safe to send back: short, and no piece of the token in it.
  expect(r.description.length).toBeLessThan(100);
  for (const part of token.split(".")) if (part.length >= 8) expect(r.description).not.toContain(part.slice(0, 8));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "wasmnet-auth-"));
  // Printable: the key reader trims a trailing newline, which a random last byte could be.
  secret = new TextEncoder().encode(Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString("hex"));
  secretFile = join(dir, "secret.key");
  writeFileSync(secretFile, secret);
  ed = await keyPair("EdDSA", "ed");
  es = await keyPair("ES256", "es");
  bothJwks = writeJwks("both.jwks.json", [...publicKeys(ed.publicFile), ...publicKeys(es.publicFile)]);
  ring = await loadKeyRing(auth());
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("accepted tokens", () => {
  test("HS256, EdDSA and ES256 tokens verify and yield identity, profile, allow and expiry", async () => {
    const wasmnet = { profile: "free", allow: ["*.example.com:443", "10.0.0.0/8:5432"] };
    const tokens = [
      await hs({ wasmnet }),
      await signWith(ed.priv, { sub: "alice", aud: AUD, exp: NOW + 600, wasmnet }),
      await signWith(es.priv, { sub: "alice", aud: AUD, exp: NOW + 600, wasmnet }),
    ];
    for (const t of tokens) {
      expect(asWritten(await verify(t))).toEqual({ ok: true, identity: "alice", profile: "free", allow: wasmnet.allow, expiresAt: NOW + 600 });
    }
    expect(ring.algorithms).toEqual(["HS256", "EdDSA", "ES256"]);
    expect(describeKeyRing(ring)).toContain(ed.kid);
  });

  test("createToken makes tokens the verifier accepts, with each kind of key", async () => {
    const base = { sub: "bob", ttlSecs: 300, aud: AUD, nowSecs: NOW, profile: "team-a", allow: ["db.internal.example:5432"] };
    for (const opts of [{ ...base, secret }, { ...base, privateJwk: ed.priv }, { ...base, privateJwk: es.priv }]) {
      const r = await verify(await createToken(opts));
      expect(asWritten(r)).toEqual({ ok: true, identity: "bob", profile: "team-a", allow: ["db.internal.example:5432"], expiresAt: NOW + 300 });
    }
  });

  test("no wasmnet claim: no profile, no narrowing; an empty allow list is a narrowing to nothing", async () => {
    expect(await verify(await hs())).toMatchObject({ ok: true, profile: null, allow: null });
    expect(await verify(await hs({ wasmnet: {} }))).toMatchObject({ ok: true, profile: null, allow: null });
    expect(await verify(await hs({ wasmnet: { allow: [] } }))).toMatchObject({ ok: true, allow: [] });
  });

  test("aud may be an array containing the audience", async () => {
    expect((await verify(await hs({ aud: ["other", AUD] }))).ok).toBe(true);
  });
});

describe("time and leeway", () => {
  test("expired beyond the leeway is refused; within it is accepted", async () => {
    await refused(await hs({ exp: NOW - 31 }), "token has expired");
    expect((await verify(await hs({ exp: NOW - 29 }))).ok).toBe(true);
    await refused(await hs({ exp: NOW - 1 }), "token has expired", { leewaySecs: 0 });
  });

  test("nbf in the future beyond the leeway is refused; within it is accepted", async () => {
    await refused(await hs({ nbf: NOW + 60 }), "token is not yet valid");
    expect((await verify(await hs({ nbf: NOW + 20 }))).ok).toBe(true);
    await refused(await hs({ nbf: NOW + 5 }), "token is not yet valid", { leewaySecs: 0 });
  });

  test("exp is required, must be a number, and must be finite", async () => {
    await refused(await hmacToken({ alg: "HS256" }, JSON.stringify({ sub: "a", aud: AUD })), 'missing "exp" claim');
    await refused(await hs({ exp: String(NOW + 600) }), '"exp" claim must be a number');
    await refused(await hmacToken({ alg: "HS256" }, `{"sub":"a","aud":"${AUD}","exp":1e400}`), '"exp" claim must be a finite number');
    await refused(await hs({ nbf: "soon" }), '"nbf" claim must be a number');
  });

  test("the real clock is used when no time is given", async () => {
    const t = await createToken({ secret, sub: "now", ttlSecs: 60, aud: AUD });
    expect((await verifyToken(t, auth(), ring)).ok).toBe(true);
    expect((await verifyToken(await createToken({ secret, sub: "old", ttlSecs: 60, aud: AUD, nowSecs: 1_000_000 }), auth(), ring)).ok).toBe(false);
  });
});

describe("audience, issuer, subject", () => {
  test("wrong or missing aud is refused", async () => {
    await refused(await hs({ aud: "another-service" }), "token is for another audience");
    await refused(await hmacToken({ alg: "HS256" }, JSON.stringify({ sub: "a", exp: NOW + 60 })), 'missing "aud" claim');
  });

  test("iss must be one of the issuers when they are set; any when not", async () => {
    const issuers = ["https://app.example", "https://other.example"];
    expect((await verify(await hs({ iss: "https://other.example" }), { issuers })).ok).toBe(true);
    await refused(await hs({ iss: "https://evil.example" }), "token issuer is not accepted", { issuers });
    await refused(await hs(), 'missing "iss" claim', { issuers });
    expect((await verify(await hs({ iss: "https://anyone.example" }))).ok).toBe(true);
  });

  test("sub is required, a non-empty string of at most 256 characters", async () => {
    await refused(await hmacToken({ alg: "HS256" }, JSON.stringify({ aud: AUD, exp: NOW + 60 })), 'missing "sub" claim');
    await refused(await hs({ sub: "" }), '"sub" claim is empty');
    await refused(await hs({ sub: 42 }), '"sub" claim must be a string');
    await refused(await hs({ sub: { id: 1 } }), '"sub" claim must be a string');
    await refused(await hs({ sub: "x".repeat(257) }), '"sub" claim is longer than 256 characters');
    expect(await verify(await hs({ sub: "x".repeat(256) }))).toMatchObject({ ok: true, identity: "x".repeat(256) });
  });

  test("a sub of 10 KB makes the token too large: 431", async () => {
    const r = await verify(await hs({ sub: "x".repeat(10_000) }));
    expect(r).toEqual({ ok: false, status: 431, description: "token is larger than 8 KiB" });
  });
});

describe("algorithms and keys", () => {
  test('alg "none" is refused, with or without a signature segment', async () => {
    const unsigned = `${b64(JSON.stringify({ alg: "none", typ: "JWT" }))}.${b64(claims())}`;
    await refused(`${unsigned}.`, /malformed/);
    await refused(`${unsigned}.${b64("sig")}`, 'algorithm "none" not accepted');
    await refused(`${b64(JSON.stringify({ alg: "NONE" }))}.${b64(claims())}.${b64("x")}`, 'algorithm "NONE" not accepted');
  });

  test("HS256 signed with the public key is refused: not configured, or configured with the real secret", async () => {
    const pubJwk = publicKeys(ed.publicFile)[0] as JWK;
    const forgeries = [
      readFileSync(ed.publicFile), // the JWKS file as published
      enc.encode(JSON.stringify(pubJwk)),
      Buffer.from(pubJwk.x as string, "base64url"), // the raw public key
    ];
    const edOnly = await loadKeyRing(auth({ hs256SecretFile: null, jwksFile: ed.publicFile }));
    expect(edOnly.algorithms).toEqual(["EdDSA"]);
    for (const key of forgeries) {
      const forged = await hmacToken({ alg: "HS256", kid: ed.kid }, claims(), key);
      await refused(forged, 'algorithm "HS256" not accepted', {}, edOnly);
      await refused(forged, "signature does not verify"); // ring with a secret: it is not this key
    }
  });

  test("an algorithm without a configured key is refused", async () => {
    const esOnly = await loadKeyRing(auth({ hs256SecretFile: null, jwksFile: es.publicFile }));
    await refused(await signWith(ed.priv, { sub: "a", aud: AUD, exp: NOW + 60 }), 'algorithm "EdDSA" not accepted', {}, esOnly);
    await refused(await hs(), 'algorithm "HS256" not accepted', {}, esOnly);
    const hsOnly = await loadKeyRing(auth({ jwksFile: null }));
    await refused(await signWith(es.priv, { sub: "a", aud: AUD, exp: NOW + 60 }), 'algorithm "ES256" not accepted', {}, hsOnly);
    await refused(await hmacToken({ alg: "RS256" }, claims()), 'algorithm "RS256" not accepted');
    await refused(await hs(), "no token keys are configured", {}, EMPTY_KEY_RING);
  });

  test("unknown kid, missing kid, and a kid of another algorithm are refused", async () => {
    const payload = { sub: "a", aud: AUD, exp: NOW + 60 };
    await refused(await signWith(ed.priv, payload, { kid: "retired-key" }), "unknown key id");
    await refused(await new SignJWT(payload).setProtectedHeader({ alg: "EdDSA" }).sign(await importJWK(ed.priv, "EdDSA")), 'token header has no "kid"');
    await refused(await signWith(ed.priv, payload, { kid: es.kid }), "key id is for another algorithm");
  });

  test("tampered payload, header or signature is refused", async () => {
    const good = await signWith(ed.priv, { sub: "alice", aud: AUD, exp: NOW + 60 });
    const [h, p, s] = good.split(".") as [string, string, string];
    await refused(`${h}.${b64(JSON.stringify({ sub: "admin", aud: AUD, exp: NOW + 60 }))}.${s}`, "signature does not verify");
    await refused(`${h}.${b64(JSON.stringify({ sub: "alice", aud: AUD, exp: NOW + 999_999 }))}.${s}`, "signature does not verify");
    await refused(`${b64(JSON.stringify({ alg: "EdDSA", kid: ed.kid, typ: "JWT" }))}.${p}.${s}`, "signature does not verify");
    const flipped = s.slice(0, 10) + (s[10] === "A" ? "B" : "A") + s.slice(11);
    await refused(`${h}.${p}.${flipped}`, "signature does not verify");
    await refused(`${h}.${p}.${s.slice(0, 20)}`, "signature does not verify"); // truncated
    const hsGood = await hs();
    const [hh, , hsig] = hsGood.split(".") as [string, string, string];
    await refused(`${hh}.${b64(claims({ sub: "root" }))}.${hsig}`, "signature does not verify");
  });

  test("unknown critical header parameters and unencoded payloads are refused", async () => {
    await refused(await hmacToken({ alg: "HS256", crit: ["x-wasmnet"], "x-wasmnet": 1 }, claims()), /unsupported header/);
    await refused(await hmacToken({ alg: "HS256", crit: ["b64"], b64: false }, claims()), /./);
  });
});

describe("malformed input", () => {
  test("over 8 KiB is 431, checked before parsing; exactly at the limit is verified", async () => {
    const r = await verify("!".repeat(8193));
    expect(r).toEqual({ ok: false, status: 431, description: "token is larger than 8 KiB" });
    // Largest signed token that fits: accepted (size is not the reason for anything below 8 KiB).
    let pad = 5000;
    while ((await hs({ pad: "p".repeat(pad + 1) })).length <= 8192) pad++;
    const fits = await hs({ pad: "p".repeat(pad) });
    expect(fits.length).toBeLessThanOrEqual(8192);
    expect(fits.length).toBeGreaterThan(8180);
    expect((await verify(fits)).ok).toBe(true);
    expect(await verify(await hs({ pad: "p".repeat(pad + 4) }))).toMatchObject({ ok: false, status: 431 });
  });

  test("malformed segments get a reason and never throw", async () => {
    const cases: [string, RegExp][] = [
      ["", /empty/],
      ["abc", /three dot-separated parts/],
      ["a.b", /three dot-separated parts/],
      ["a.b.c.d", /three dot-separated parts/],
      ["..", /not base64url/],
      ["a..c", /not base64url/],
      ["a.b!.c", /not base64url/],
      ["a b.c.d", /not base64url/],
      ["é.é.é", /not base64url/],
      ["a.b.c", /header/],
      [`${b64("{")}.${b64(claims())}.${b64("s")}`, /header is not a JSON object/],
      [`${b64("[1]")}.${b64(claims())}.${b64("s")}`, /header is not a JSON object/],
      [`${b64(JSON.stringify({ typ: "JWT" }))}.${b64(claims())}.${b64("s")}`, /"alg"/],
      [`${b64(JSON.stringify({ alg: 7 }))}.${b64(claims())}.${b64("s")}`, /"alg"/],
    ];
    for (const [t, reason] of cases) await refused(t, reason);
  });

  test("claims that are not a JSON object are refused (signed correctly)", async () => {
    for (const text of ["not json", "[1,2]", '"alice"', "null", "42", '{"sub":"a",', "\xff\xfe"]) {
      await refused(await hmacToken({ alg: "HS256" }, text), "claims are not a JSON object");
    }
  });

  test("huge or deeply nested claims under 8 KiB are handled; above, 431", async () => {
    // Claims wasmnet does not know are ignored; the deepest nesting that fits in 8 KiB parses.
    const deep = await hmacToken({ alg: "HS256" }, `{"sub":"a","aud":"${AUD}","exp":${NOW + 60},"x":${"[".repeat(3000)}${"]".repeat(3000)}}`);
    expect(await verify(deep)).toMatchObject({ ok: true, identity: "a" });
    const many = Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`c${i}`, i]));
    expect((await verify(await hs(many))).ok).toBe(true);
    expect(await verify(await hs({ blob: "z".repeat(20_000) }))).toMatchObject({ ok: false, status: 431 });
  });

  test("wasmnet claim with an invalid shape is refused with a reason", async () => {
    const bad: [unknown, RegExp][] = [
      ["free", /"wasmnet" claim must be an object/],
      [null, /"wasmnet" claim must be an object/],
      [["free"], /"wasmnet" claim must be an object/],
      [{ deny: ["*"] }, /unknown key/],
      [{ profile: 7 }, /wasmnet.profile must be a string/],
      [{ profile: "" }, /1-64 characters/],
      [{ profile: "p".repeat(65) }, /1-64 characters/],
      [{ profile: "Free" }, /a-z, 0-9/],
      [{ profile: "../admin" }, /a-z, 0-9/],
      [{ allow: "*:443" }, /must be an array/],
      [{ allow: { 0: "*:443" } }, /must be an array/],
      [{ allow: [443] }, /wasmnet.allow\[0\] must be a string/],
      [{ allow: ["*:443", null] }, /wasmnet.allow\[1\] must be a string/],
      [{ allow: Array.from({ length: 65 }, (_, i) => `h${i}.example:443`) }, /more than 64 entries/],
      [{ allow: [`${"a".repeat(263)}.example`] }, /wasmnet.allow\[0\] is longer than 270 characters/],
      [{ allow: ["bad entry"] }, /wasmnet.allow\[0\] is not a valid policy entry/],
      [{ allow: ["example.com:0"] }, /not a valid policy entry/],
      [{ allow: [""] }, /not a valid policy entry/],
      [{ allow: ["*:80-70000"] }, /not a valid policy entry/],
    ];
    for (const [wasmnet, reason] of bad) await refused(await hs({ wasmnet }), reason);
    expect(await verify(await hs({ wasmnet: { allow: Array.from({ length: 64 }, (_, i) => `h${i}.example:443`) } }))).toMatchObject({ ok: true });
    // The verifier's length bound is the parser's: the longest valid entry (267 characters) passes.
    const longest = `*.${Array.from({ length: 4 }, () => "a".repeat(62)).join(".")}.b:65535-65535`;
    expect(asWritten(await verify(await hs({ wasmnet: { allow: [longest] } })))).toMatchObject({ ok: true, allow: [longest] });
  });
});

describe("key files", () => {
  test("rotation: a JWKS with the old and the new key verifies both; after the old is dropped, its tokens are refused", async () => {
    const next = await keyPair("EdDSA", "ed-next");
    const rotating = writeJwks("rotating.jwks.json", [...publicKeys(ed.publicFile), ...publicKeys(next.publicFile)]);
    const during = await loadKeyRing(auth({ hs256SecretFile: null, jwksFile: rotating }));
    const payload = { sub: "a", aud: AUD, exp: NOW + 60 };
    const oldToken = await signWith(ed.priv, payload);
    const newToken = await signWith(next.priv, payload);
    expect((await verify(oldToken, {}, during)).ok).toBe(true);
    expect((await verify(newToken, {}, during)).ok).toBe(true);
    const after = await loadKeyRing(auth({ hs256SecretFile: null, jwksFile: next.publicFile }));
    await refused(oldToken, "unknown key id", {}, after);
    expect((await verify(newToken, {}, after)).ok).toBe(true);
  });

  test("the HS256 secret: a text one loses its trailing newline, a binary one is kept whole; at least 32 bytes", async () => {
    const s32 = "k".repeat(32);
    for (const text of [`${s32}\n`, `${s32}\r\n`, s32]) {
      writeFileSync(join(dir, "s32"), text);
      const r = await loadKeyRing(auth({ hs256SecretFile: join(dir, "s32"), jwksFile: null }));
      const t = await createToken({ secret: enc.encode(s32), sub: "a", ttlSecs: 60, aud: AUD, nowSecs: NOW });
      expect((await verify(t, {}, r)).ok).toBe(true);
    }
    // A binary secret is taken byte for byte: a last byte of 0x0a (or 0x0d 0x0a) is part of the key.
    for (const tail of [[0x0a], [0x0d, 0x0a]]) {
      const binary = new Uint8Array([...crypto.getRandomValues(new Uint8Array(32)).map((b) => b | 0x80), 0x01, ...tail]);
      writeFileSync(join(dir, "bin"), binary);
      const r = await loadKeyRing(auth({ hs256SecretFile: join(dir, "bin"), jwksFile: null }));
      const t = await createToken({ secret: binary, sub: "a", ttlSecs: 60, aud: AUD, nowSecs: NOW });
      expect((await verify(t, {}, r)).ok).toBe(true);
    }
    writeFileSync(join(dir, "s31"), `${"k".repeat(31)}\n`);
    await expect(loadKeyRing(auth({ hs256SecretFile: join(dir, "s31"), jwksFile: null }))).rejects.toThrow(/31 bytes; at least 32/);
    await expect(loadKeyRing(auth({ hs256SecretFile: join(dir, "missing.key"), jwksFile: null }))).rejects.toThrow(/missing\.key/);
  });

  test("relative key paths are taken from baseDir", async () => {
    const r = await loadKeyRing(auth({ hs256SecretFile: "secret.key", jwksFile: "both.jwks.json" }), { baseDir: dir });
    expect(r.algorithms).toEqual(["HS256", "EdDSA", "ES256"]);
    expect(r.sources.jwksFile).toBe(bothJwks);
  });

  test("bad JWKS files are refused with a reason naming the file and key", async () => {
    const edPub = publicKeys(ed.publicFile)[0] as Record<string, unknown>;
    const esPub = publicKeys(es.publicFile)[0] as Record<string, unknown>;
    const cases: [unknown, RegExp][] = [
      [{ keys: [{ ...edPub, d: ed.priv.d }] }, /private key material \("d"\)/],
      [{ keys: [{ ...esPub, d: es.priv.d }] }, /private key material/],
      [{ keys: [{ kty: "RSA", kid: "r", n: "AQAB", e: "AQAB" }] }, /key type "RSA" is not supported/],
      [{ keys: [{ kty: "oct", kid: "o", k: "c2VjcmV0" }] }, /private key material|symmetric/],
      [{ keys: [{ ...edPub, crv: "X25519" }] }, /OKP curve "X25519" is not supported/],
      [{ keys: [{ ...edPub, crv: "Ed448" }] }, /OKP curve "Ed448" is not supported/],
      [{ keys: [{ ...esPub, crv: "P-384" }] }, /EC curve "P-384" is not supported/],
      [{ keys: [{ ...edPub, alg: "ES256" }] }, /"alg" is "ES256" but a OKP Ed25519 key is for EdDSA/],
      [{ keys: [{ ...esPub, alg: "HS256" }] }, /"alg" is "HS256"/],
      [{ keys: [{ ...edPub, use: "enc" }] }, /"use" is "enc"/],
      [{ keys: [{ ...edPub, key_ops: ["encrypt"] }] }, /key_ops/],
      [{ keys: [edPub, { ...esPub, kid: edPub.kid }] }, /duplicate kid/],
      [{ keys: [{ ...edPub, kid: undefined }] }, /"kid" is missing/],
      [{ keys: [{ ...edPub, kid: "" }] }, /"kid" is missing/],
      [{ keys: [{ ...edPub, x: "short" }] }, /"x" is not a 32-byte base64url value/],
      [{ keys: [{ ...esPub, y: undefined }] }, /"y" is not/],
      [{ keys: [{ ...esPub, x: edPub.x }] }, /not a valid ES256 public key/], // not a point on the curve
      [{ keys: [] }, /no keys/],
      [{ keys: "none" }, /"keys" array/],
      [[edPub], /"keys" array/],
      [{ keys: [null] }, /key 1: not a JSON object/],
    ];
    for (const [doc, reason] of cases) {
      const f = writeJwks("bad.jwks.json", []);
      writeFileSync(f, JSON.stringify(doc));
      const p = loadKeyRing(auth({ hs256SecretFile: null, jwksFile: f }));
      await expect(p).rejects.toBeInstanceOf(AuthKeyError);
      await expect(loadKeyRing(auth({ hs256SecretFile: null, jwksFile: f }))).rejects.toThrow(reason);
    }
    writeFileSync(join(dir, "garbage.json"), "{not json");
    await expect(loadKeyRing(auth({ hs256SecretFile: null, jwksFile: join(dir, "garbage.json") }))).rejects.toThrow(/garbage\.json: not valid JSON/);
  });

  test("configurations that cannot work are refused: a key without an audience, required without a key", async () => {
    await expect(loadKeyRing(auth({ audience: null }))).rejects.toThrow(/audience is required/);
    await expect(loadKeyRing(auth({ hs256SecretFile: null, jwksFile: null }))).rejects.toThrow(/required = true needs/);
    const open = await loadKeyRing(auth({ required: false, audience: null, hs256SecretFile: null, jwksFile: null }));
    expect(open.algorithms).toEqual([]);
  });
});

test("wwwAuthenticate quotes the reason and escapes what a header cannot carry", () => {
  expect(wwwAuthenticate("token has expired")).toBe('Bearer error="invalid_token", error_description="token has expired"');
  expect(wwwAuthenticate('say "hi" \\ bye')).toBe('Bearer error="invalid_token", error_description="say \\"hi\\" \\\\ bye"');
  const v = wwwAuthenticate("line\r\nInjected: yes\x00\x7fé");
  expect(v).toBe('Bearer error="invalid_token", error_description="line  Injected: yes   "');
  expect(() => new Headers({ "www-authenticate": v })).not.toThrow();
  expect(wwwAuthenticate("x".repeat(1000)).length).toBeLessThan(300);
});
