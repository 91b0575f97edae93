// `wasmnet token keygen` and `wasmnet token create` as operators run them (spawned), and the
// tokens they print checked by the verifier: keygen → create → verify.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuthConfig } from "../src/auth/config.ts";
import { parseDuration } from "../src/auth/issue.ts";
import { loadKeyRing } from "../src/auth/keys.ts";
import { verifyToken } from "../src/auth/verify.ts";

const cli = join(import.meta.dir, "../src/cli.ts");
const run = (args: string[]) => {
  const r = Bun.spawnSync([process.execPath, cli, "token", ...args], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
};

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "wasmnet-auth-cli-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const auth = (over: Partial<AuthConfig>): AuthConfig => ({
  required: true,
  audience: "wasmnet",
  issuers: null,
  hs256SecretFile: null,
  jwksFile: null,
  leewaySecs: 30,
  ...over,
});

test("keygen → create → verify, for EdDSA and ES256", async () => {
  for (const alg of ["EdDSA", "ES256"] as const) {
    const out = join(dir, `keys-${alg}`);
    const k = run(["keygen", "--alg", alg, "--out", out]);
    expect(k.code).toBe(0);
    expect(k.out).toContain(join(out, "private.jwk.json"));
    expect(k.out).toContain(join(out, "public.jwks.json"));
    expect(statSync(join(out, "private.jwk.json")).mode & 0o777).toBe(0o600);
    const priv = JSON.parse(readFileSync(join(out, "private.jwk.json"), "utf8"));
    expect(priv).toMatchObject({ alg, kid: expect.any(String), d: expect.any(String) });
    const pub = JSON.parse(readFileSync(join(out, "public.jwks.json"), "utf8"));
    expect(pub.keys).toHaveLength(1);
    expect(pub.keys[0]).toMatchObject({ alg, kid: priv.kid, use: "sig" });
    expect(pub.keys[0].d).toBeUndefined();

    const c = run(["create", "--key", join(out, "private.jwk.json"), "--sub", "alice", "--profile", "free", "--allow", "a.example:443", "--allow=b.example:80,c.example", "--ttl", "2h", "--iss", "https://app.example"]);
    expect(c.code).toBe(0);
    const token = c.out.trim();
    expect(token.split(".")).toHaveLength(3);
    const ring = await loadKeyRing(auth({ jwksFile: join(out, "public.jwks.json"), issuers: ["https://app.example"] }));
    const v = await verifyToken(token, auth({ issuers: ["https://app.example"] }), ring);
    expect(v).toMatchObject({ ok: true, identity: "alice", profile: "free" });
    if (!v.ok) return;
    expect(v.allow?.map((e) => e.text)).toEqual(["a.example:443", "b.example:80", "c.example"]);
    const ttl = v.expiresAt - Date.now() / 1000;
    expect(ttl).toBeGreaterThan(7000);
    expect(ttl).toBeLessThanOrEqual(7200);
  }
}, 30_000);

test("create with an HS256 secret file; default ttl 15m and audience wasmnet", async () => {
  const secretFile = join(dir, "secret.key");
  writeFileSync(secretFile, `${"s".repeat(40)}\n`);
  const c = run(["create", "--secret-file", secretFile, "--sub", "bob"]);
  expect(c.code).toBe(0);
  const ring = await loadKeyRing(auth({ hs256SecretFile: secretFile }));
  const v = await verifyToken(c.out.trim(), auth({}), ring);
  expect(v).toMatchObject({ ok: true, identity: "bob", profile: null, allow: null });
  if (v.ok) expect(v.expiresAt - Date.now() / 1000).toBeLessThanOrEqual(900);
  const other = run(["create", "--secret-file", secretFile, "--sub", "bob", "--aud", "elsewhere"]);
  expect(await verifyToken(other.out.trim(), auth({}), ring)).toMatchObject({ ok: false, description: "token is for another audience" });
});

test("mistakes exit 2 with a message and print no token", () => {
  const secretFile = join(dir, "short.key");
  writeFileSync(secretFile, "too short\n");
  const keyDir = join(dir, "k1");
  expect(run(["keygen", "--out", keyDir]).code).toBe(0);
  const cases: [string[], RegExp][] = [
    [["create", "--sub", "x"], /exactly one of --secret-file or --key/],
    [["create", "--secret-file", secretFile, "--key", join(keyDir, "private.jwk.json"), "--sub", "x"], /exactly one/],
    [["create", "--key", join(keyDir, "private.jwk.json")], /needs --sub/],
    [["create", "--secret-file", secretFile, "--sub", "x"], /at least 32/],
    [["create", "--key", join(keyDir, "public.jwks.json"), "--sub", "x"], /key type|private part/],
    [["create", "--key", join(keyDir, "private.jwk.json"), "--sub", "x", "--ttl", "forever"], /--ttl: bad duration/],
    [["create", "--key", join(keyDir, "private.jwk.json"), "--sub", "x", "--profile", "Bad Name"], /wasmnet.profile/],
    [["create", "--key", join(keyDir, "private.jwk.json"), "--sub", "x", "--allow", "host:99999"], /allow: bad entry "host:99999"/],
    [["create", "--key", join(keyDir, "private.jwk.json"), "--sub", "x".repeat(300)], /longer than 256/],
    [["create", "--key", join(dir, "nope.json"), "--sub", "x"], /nope\.json/],
    [["keygen", "--out", keyDir], /already exists/],
    [["keygen", "--alg", "RS256", "--out", join(dir, "k2")], /--alg must be EdDSA or ES256/],
    [["keygen"], /needs --out/],
  ];
  for (const [args, msg] of cases) {
    const r = run(args);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(msg);
    expect(r.out).toBe("");
  }
}, 30_000); // thirteen CLI start-ups on a shared machine

test("--help documents the flags, including how to give several --allow entries", () => {
  const h = run(["create", "--help"]).out;
  for (const flag of ["--secret-file", "--key", "--sub", "--profile", "--allow", "--ttl", "--aud", "--iss"]) expect(h).toContain(flag);
  expect(h).toMatch(/repeat the flag or separate entries with commas/);
  expect(run(["keygen", "--help"]).out).toContain("--out");
});

test("parseDuration", () => {
  expect(parseDuration("30s")).toBe(30);
  expect(parseDuration("15m")).toBe(900);
  expect(parseDuration("2h")).toBe(7200);
  expect(parseDuration("1d")).toBe(86400);
  expect(parseDuration("90")).toBe(90);
  for (const bad of ["", "0s", "-5m", "1.5h", "15 m", "1w", "400d", "m"]) expect(() => parseDuration(bad)).toThrow(/bad duration/);
});
