// Wisp v2's own authentication as identities: a password (0x02) or Ed25519 key (0x03) login
// becomes the session's identity `wisp:<user>` with the user's profile, counted by the same
// per-identity limits as a token identity. Real server, real WebSockets, real signatures: the
// wisp-js client where it can (it has password auth, not key auth) and the packet-level
// RawWisp client for the rest.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
// @ts-expect-error wisp-js ships no type declarations
import { extensions as wjsExt } from "@mercuryworkshop/wisp-js/client";
import { createToken } from "../src/auth/issue.ts";
import { parsePolicy } from "../src/policy/load.ts";
import {
  decodeWispKeyServer,
  encodeWispKeyClient,
  encodeWispPasswordClient,
  WISP_CLOSE,
  WISP_EXT,
  WISP_KEY_ALG,
  type WispExtension,
} from "../src/protocol/wisp.ts";
import { startServer } from "./helpers/server.ts";
import { echoServer } from "./helpers/targets.ts";
import { waitFor } from "./helpers/wait.ts";
import { RawWisp, track, wispJsConnect } from "./helpers/wisp.ts";

const enc = (s: string) => new TextEncoder().encode(s);

interface KeyPair {
  priv: CryptoKey;
  raw: Uint8Array;
  hash: Uint8Array;
}

async function keyPair(): Promise<KeyPair> {
  const kp = (await crypto.subtle.generateKey("Ed25519", true, ["sign", "verify"])) as CryptoKeyPair;
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", kp.publicKey));
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", raw));
  return { priv: kp.privateKey, raw, hash };
}

async function sign(k: KeyPair, challenge: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign("Ed25519", k.priv, challenge as Uint8Array<ArrayBuffer>));
}

/** The key-auth challenge in the server's INFO. */
function challengeOf(c: RawWisp): Uint8Array {
  const ext = c.serverInfo?.extensions.find((e) => e.id === WISP_EXT.keyAuth);
  if (!ext) throw new Error("the server offered no key authentication");
  return decodeWispKeyServer(ext.payload)!.challenge;
}

const passwordExt = (user: string, password: string): WispExtension => ({ id: WISP_EXT.passwordAuth, payload: encodeWispPasswordClient(user, password) });
const UDP_EXT: WispExtension = { id: WISP_EXT.udp, payload: new Uint8Array(0) };
const CONFIRM_EXT: WispExtension = { id: WISP_EXT.streamConfirmation, payload: new Uint8Array(0) };

/** A v2 connection that answered the server's INFO with `extensions`; not yet known to be accepted. */
async function hello(url: string, extensions: (c: RawWisp) => Promise<WispExtension[]> | WispExtension[]): Promise<RawWisp> {
  const c = await RawWisp.open(url, { v2: true, info: null });
  c.send({ type: "info", stream: 0, major: 2, minor: 0, extensions: [UDP_EXT, CONFIRM_EXT, ...(await extensions(c))] });
  return c;
}

/** A v2 connection logged in: the server's CONTINUE on stream 0 says so. */
async function login(url: string, extensions: (c: RawWisp) => Promise<WispExtension[]> | WispExtension[]): Promise<RawWisp> {
  const c = await hello(url, extensions);
  await c.next((p) => p.type === "continue" && p.stream === 0);
  return c;
}

const byPassword = (user: string, password: string) => () => [passwordExt(user, password)];
const byKey = (k: KeyPair, mangle: (sig: Uint8Array) => void = () => {}) => async (c: RawWisp) => {
  const signature = await sign(k, challengeOf(c));
  mangle(signature);
  return [{ id: WISP_EXT.keyAuth, payload: encodeWispKeyClient({ algorithm: WISP_KEY_ALG.ed25519, keyHash: k.hash, signature }) }];
};

/** A refused login: CLOSE on stream 0 with `reason`, then WebSocket close 1008. Returns the close reason text. */
async function refused(c: RawWisp, reason: number): Promise<string> {
  expect(await c.closeOf(0)).toBe(reason);
  await waitFor(() => c.closed !== null, { what: "the server to close the WebSocket" });
  expect(c.closed!.code).toBe(1008);
  return c.closed!.reason;
}

/** A TCP stream through `c` to `port`: resolves "data" once echoed, or the CLOSE reason. */
async function tryEcho(c: RawWisp, id: number, port: number): Promise<"data" | number> {
  c.send({ type: "connect", stream: id, streamType: 1, port, host: "127.0.0.1" });
  c.send({ type: "data", stream: id, data: enc("ping") });
  const p = await c.next((p) => (p.type === "continue" && p.stream === id) || (p.type === "close" && p.stream === id));
  if (p.type === "close") return p.reason;
  await c.waitBytes(id, 4);
  return "data";
}

const allowed = echoServer(); // reachable in every profile
const other = echoServer(); // allowed at the top level, not in profile "free"
let dir: string;
const secret = crypto.getRandomValues(new Uint8Array(32));
let bob: KeyPair;
let carol: KeyPair;
let stranger: KeyPair;
let srv: Awaited<ReturnType<typeof startServer>>;
let url: string;
const open: RawWisp[] = [];
const keep = (c: RawWisp) => (open.push(c), c);

beforeAll(async () => {
  [bob, carol, stranger] = [await keyPair(), await keyPair(), await keyPair()];
  dir = mkdtempSync(join(tmpdir(), "wasmnet-wisp-auth-"));
  writeFileSync(join(dir, "secret.key"), secret);
  const policy = parsePolicy(
    `
[network]
deny = []
allow = ["*"]
[auth]
audience = "wasmnet"
hs256_secret_file = "secret.key"

[profiles.free.network]
allow = ["127.0.0.1:${allowed.port}"]
[profiles.free.limits]
max_sessions_per_identity = 1
[profiles.pro.limits]
max_sessions_per_identity = 5
max_connections_per_identity = 1

[wisp.users]
root = "rootpw"
[wisp.users.alice]
password = "alicepw"
profile = "free"
[wisp.users.bob]
public_key = "${Buffer.from(bob.raw).toString("hex")}"
profile = "free"
[wisp.users.carol]
password = "carolpw"
public_key = "${Buffer.from(carol.raw).toString("base64")}"
profile = "pro"
`,
    join(dir, "policy.toml"),
  );
  srv = await startServer({ policy });
  url = `ws://127.0.0.1:${srv.port}/wisp/`;
});

afterAll(async () => {
  for (const c of open) c.close();
  await srv.stop();
  allowed.stop();
  other.stop();
  rmSync(dir, { recursive: true, force: true });
});

const metrics = () => srv.handler.ctx.metrics;
const inProfile = (p: string) => metrics().profileSessions.get(p) ?? 0;

describe("the server's offer", () => {
  test("both methods configured: each offered, neither alone required; a fresh 64-byte challenge per connection", async () => {
    const a = keep(await RawWisp.open(url, { v2: true, info: null }));
    const b = keep(await RawWisp.open(url, { v2: true, info: null }));
    expect(a.serverInfo!.extensions.find((e) => e.id === WISP_EXT.passwordAuth)!.payload).toEqual(new Uint8Array([0]));
    const offer = decodeWispKeyServer(a.serverInfo!.extensions.find((e) => e.id === WISP_EXT.keyAuth)!.payload)!;
    expect(offer.required).toBe(false);
    expect(offer.algorithms).toBe(WISP_KEY_ALG.ed25519);
    expect(offer.challenge.length).toBe(64);
    expect(challengeOf(b)).not.toEqual(offer.challenge);
  });
});

describe("password login (0x02) → identity wisp:<user> with its profile", () => {
  test("the profile's policy applies: a destination allowed at the top level but not in the profile is CLOSEd 0x48", async () => {
    const alice = keep(await login(url, byPassword("alice", "alicepw")));
    await waitFor(() => inProfile("free") === 1, { what: "the session counted under profile free" });
    expect(await tryEcho(alice, 1, allowed.port)).toBe("data");
    expect(await tryEcho(alice, 2, other.port)).toBe(WISP_CLOSE.blocked);
    // A user without a profile runs under the top level, which allows it: the profile made the difference.
    const root = keep(await login(url, byPassword("root", "rootpw")));
    expect(await tryEcho(root, 1, other.port)).toBe("data");
    alice.close();
    root.close();
    await waitFor(() => inProfile("free") === 0, { what: "alice's session to end" });
  });

  test("the wisp-js client logs in with its own password extension and gets the profile's policy", async () => {
    const js = await wispJsConnect(url, 2, [
      new wjsExt.UDPExtension({ client_config: {} }),
      new wjsExt.PasswordAuthExtension({ client_config: { username: "alice", password: "alicepw" } }),
    ]);
    const blocked = track(js.create_stream("127.0.0.1", other.port));
    expect(await blocked.closed).toBe(WISP_CLOSE.blocked);
    const stream = js.create_stream("127.0.0.1", allowed.port);
    const ok = track(stream);
    stream.send(enc("hello"));
    await ok.waitBytes(5);
    js.close();
    await waitFor(() => inProfile("free") === 0, { what: "the wisp-js session to end" });
  });

  test("max_sessions_per_identity: a second login of the same user is refused (0x49, 1008); the unit comes back when the first ends", async () => {
    const first = keep(await login(url, byPassword("alice", "alicepw")));
    const second = await hello(url, byPassword("alice", "alicepw"));
    expect(await refused(second, WISP_CLOSE.throttled)).toContain("max_sessions_per_identity (1) reached for alice");
    // Another user of the same profile has its own allowance.
    const bobs = keep(await login(url, byKey(bob)));
    expect(await tryEcho(bobs, 1, allowed.port)).toBe("data");
    first.close();
    await waitFor(() => inProfile("free") === 1, { what: "alice's first session to end" });
    const third = keep(await login(url, byPassword("alice", "alicepw")));
    expect(await tryEcho(third, 1, allowed.port)).toBe("data");
    third.close();
    bobs.close();
    await waitFor(() => inProfile("free") === 0, { what: "the sessions to end" });
  });

  test("wrong password → 0xc0; unknown user → 0xc0; no credentials → 0xc2", async () => {
    await refused(await hello(url, byPassword("alice", "wrong")), WISP_CLOSE.authBadPassword);
    await refused(await hello(url, byPassword("mallory", "alicepw")), WISP_CLOSE.authBadPassword);
    await refused(await hello(url, () => []), WISP_CLOSE.authMissingCredentials);
    // A key-only user has no password: logging in with an empty one is a wrong password.
    await refused(await hello(url, byPassword("bob", "")), WISP_CLOSE.authBadPassword);
  });
});

describe("key login (0x03, Ed25519)", () => {
  test("a signed challenge logs in as the key's user, under its profile", async () => {
    const c = keep(await login(url, byKey(bob)));
    await waitFor(() => inProfile("free") === 1, { what: "bob's session counted under profile free" });
    expect(await tryEcho(c, 1, allowed.port)).toBe("data");
    expect(await tryEcho(c, 2, other.port)).toBe(WISP_CLOSE.blocked);
    c.close();
    await waitFor(() => inProfile("free") === 0, { what: "bob's session to end" });
  });

  test("bad signature, unknown key, another algorithm, a replayed signature → 0xc1 and 1008", async () => {
    await refused(await hello(url, byKey(bob, (sig) => (sig[10]! ^= 1))), WISP_CLOSE.authBadSignature);
    await refused(await hello(url, byKey(stranger)), WISP_CLOSE.authBadSignature);
    // bob's hash with a stranger's signature.
    await refused(
      await hello(url, async (c) => [{ id: WISP_EXT.keyAuth, payload: encodeWispKeyClient({ algorithm: 1, keyHash: bob.hash, signature: await sign(stranger, challengeOf(c)) }) }]),
      WISP_CLOSE.authBadSignature,
    );
    await refused(
      await hello(url, async (c) => [{ id: WISP_EXT.keyAuth, payload: encodeWispKeyClient({ algorithm: 0x02, keyHash: bob.hash, signature: await sign(bob, challengeOf(c)) }) }]),
      WISP_CLOSE.authBadSignature,
    );
    // A signature that verified on one connection is worth nothing on the next: its challenge differs.
    const first = await RawWisp.open(url, { v2: true, info: null });
    const signature = await sign(bob, challengeOf(first));
    first.close();
    await refused(await hello(url, () => [{ id: WISP_EXT.keyAuth, payload: encodeWispKeyClient({ algorithm: 1, keyHash: bob.hash, signature }) }]), WISP_CLOSE.authBadSignature);
    // A truncated signature.
    await refused(await hello(url, async (c) => [{ id: WISP_EXT.keyAuth, payload: encodeWispKeyClient({ algorithm: 1, keyHash: bob.hash, signature: (await sign(bob, challengeOf(c))).subarray(0, 63) }) }]), WISP_CLOSE.authBadSignature);
  });

  test("missing or unreadable credentials → 0xc2", async () => {
    await refused(await hello(url, () => [{ id: WISP_EXT.keyAuth, payload: new Uint8Array(10) }]), WISP_CLOSE.authMissingCredentials);
    await refused(await hello(url, () => []), WISP_CLOSE.authMissingCredentials);
  });

  test("packets sent right behind the INFO wait for the login, then go on in order", async () => {
    const c = keep(await RawWisp.open(url, { v2: true, info: null }));
    const exts = await byKey(bob)(c);
    c.send({ type: "info", stream: 0, major: 2, minor: 0, extensions: [CONFIRM_EXT, ...exts] });
    c.send({ type: "connect", stream: 7, streamType: 1, port: allowed.port, host: "127.0.0.1" });
    c.send({ type: "data", stream: 7, data: enc("early bytes") });
    c.send({ type: "connect", stream: 8, streamType: 1, port: other.port, host: "127.0.0.1" });
    await c.next((p) => p.type === "continue" && p.stream === 0);
    await c.waitBytes(7, 11);
    // Judged under the login's profile, not the anonymous session it started as.
    expect(await c.closeOf(8)).toBe(WISP_CLOSE.blocked);
    c.close();
    await waitFor(() => inProfile("free") === 0, { what: "bob's session to end" });
  });

  test("password and key logins of one user are one identity: per-identity limits count both", async () => {
    const viaPassword = keep(await login(url, byPassword("carol", "carolpw")));
    const viaKey = keep(await login(url, byKey(carol)));
    await waitFor(() => inProfile("pro") === 2, { what: "both of carol's sessions under profile pro" });
    // max_connections_per_identity = 1 in profile pro, across carol's sessions.
    expect(await tryEcho(viaPassword, 1, other.port)).toBe("data");
    expect(await tryEcho(viaKey, 1, allowed.port)).toBe(WISP_CLOSE.throttled);
    viaPassword.close();
    viaKey.close();
    await waitFor(() => inProfile("pro") === 0, { what: "carol's sessions to end" });
  });
});

describe("no way around authentication", () => {
  test("v1 clients, clients that skip INFO or pipeline packets behind a failed login: refused before anything is opened", async () => {
    const before = other.accepted;
    // v1: no INFO exchange, so no credentials: CLOSE 0xc2 at once, whatever the client sends.
    const v1 = new WebSocket(url);
    v1.binaryType = "arraybuffer";
    const v1First = new Promise<Uint8Array>((r) => (v1.onmessage = (m) => r(new Uint8Array(m.data as ArrayBuffer))));
    const v1Closed = new Promise<number>((r) => (v1.onclose = (e) => r(e.code)));
    v1.onopen = () => v1.send(Uint8Array.of(1, 1, 0, 0, 0, 1, other.port & 0xff, other.port >> 8, ...enc("127.0.0.1")));
    expect([...(await v1First)]).toEqual([4, 0, 0, 0, 0, WISP_CLOSE.authMissingCredentials]);
    expect(await v1Closed).toBe(1008);
    // v2 without INFO: a CONNECT instead.
    const skip = await RawWisp.open(url, { v2: true, info: null });
    skip.send({ type: "connect", stream: 1, streamType: 1, port: other.port, host: "127.0.0.1" });
    await refused(skip, WISP_CLOSE.authMissingCredentials);
    // An INFO claiming version 1, without credentials.
    const old = await RawWisp.open(url, { v2: true, info: null });
    old.send({ type: "info", stream: 0, major: 1, minor: 2, extensions: [] });
    old.send({ type: "connect", stream: 1, streamType: 1, port: other.port, host: "127.0.0.1" });
    await refused(old, WISP_CLOSE.authMissingCredentials);
    // A bad signature with streams pipelined behind it: they are dropped with the login.
    const forged = await RawWisp.open(url, { v2: true, info: null });
    forged.send({ type: "info", stream: 0, major: 2, minor: 0, extensions: await byKey(bob, (s) => (s[0]! ^= 1))(forged) });
    forged.send({ type: "connect", stream: 1, streamType: 1, port: other.port, host: "127.0.0.1" });
    await refused(forged, WISP_CLOSE.authBadSignature);
    // Barrier: a logged-in client reaches the same target now. Each refused socket's packets were
    // handled before its close was sent, so a dial from any of them would have come first.
    const root = keep(await login(url, byPassword("root", "rootpw")));
    expect(await tryEcho(root, 1, other.port)).toBe("data");
    expect(other.accepted).toBe(before + 1);
    root.close();
  });
});

describe("a session that came with a token", () => {
  test("keeps the token's identity and profile after a Wisp login; the login is still checked", async () => {
    const token = await createToken({ secret, sub: "tina", ttlSecs: 300, aud: "wasmnet", profile: "pro" });
    const withToken = `${url}?token=${token}`;
    // alice's profile (free) would block `other`; the token's (pro) allows it.
    const c = keep(await login(withToken, byPassword("alice", "alicepw")));
    await waitFor(() => inProfile("pro") === 1, { what: "the session counted under the token's profile" });
    expect(inProfile("free")).toBe(0);
    expect(await tryEcho(c, 1, other.port)).toBe("data");
    // alice's own max_sessions_per_identity (1) is not taken by the token session.
    const alice = keep(await login(url, byPassword("alice", "alicepw")));
    alice.close();
    // Wrong credentials are refused even with a valid token.
    await refused(await hello(withToken, byPassword("alice", "nope")), WISP_CLOSE.authBadPassword);
    c.close();
    await waitFor(() => inProfile("pro") === 0 && inProfile("free") === 0, { what: "the sessions to end" });
  });
});

describe("a key-only server", () => {
  test("offers only key auth, required; v1 is refused", async () => {
    const k = await keyPair();
    const policy = parsePolicy(`[network]\ndeny = []\nallow = ["*"]\n[wisp.users.kim]\npublic_key = "${Buffer.from(k.raw).toString("base64url")}"`, "key-only.toml");
    const s = await startServer({ policy });
    try {
      const u = `ws://127.0.0.1:${s.port}/wisp/`;
      const c = await RawWisp.open(u, { v2: true, info: null });
      expect(c.serverInfo!.extensions.some((e) => e.id === WISP_EXT.passwordAuth)).toBe(false);
      expect(decodeWispKeyServer(c.serverInfo!.extensions.find((e) => e.id === WISP_EXT.keyAuth)!.payload)!.required).toBe(true);
      c.close();
      const ok = await login(u, byKey(k));
      expect(await tryEcho(ok, 1, other.port)).toBe("data");
      ok.close();
      // A password extension is not offered, so it is no credential here.
      await refused(await hello(u, byPassword("kim", "x")), WISP_CLOSE.authMissingCredentials);
      const v1 = new WebSocket(u);
      v1.binaryType = "arraybuffer";
      const first = await new Promise<Uint8Array>((r) => (v1.onmessage = (m) => r(new Uint8Array(m.data as ArrayBuffer))));
      expect([...first]).toEqual([4, 0, 0, 0, 0, WISP_CLOSE.authMissingCredentials]);
    } finally {
      await s.stop();
    }
  });
});
