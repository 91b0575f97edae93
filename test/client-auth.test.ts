// The client with tokens, run in Bun against real wasmnet servers whose policies have an [auth]
// table (keys written to a temp dir here): a good token is the session's identity and profile;
// a refused session is a typed error with the server's reason (EAUTH for 401/431, EREFUSED with
// the status for 403/429/503), learned by the client's one plain GET after the WebSocket failed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WasmnetClient, WasmnetError } from "../client/src/index.ts";
import { bearerDescription, probeUrl } from "../client/src/refusal.ts";
import { createToken, generateKeys } from "../src/auth/issue.ts";
import { startServer } from "./helpers/server.ts";
import { echoServer } from "./helpers/targets.ts";
import { waitFor } from "./helpers/wait.ts";

type Srv = Awaited<ReturnType<typeof startServer>>;

const unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => unhandled.push(e);
process.on("unhandledRejection", onUnhandled);

let dir: string;
let secret: Uint8Array;
let privateJwk: Record<string, unknown>;
let authSrv: Srv; // [auth] required, profile "free" capped at one session per identity
let originSrv: Srv; // allowed_origins set: a client without Origin is refused (403)
let fullSrv: Srv; // max_sessions = 1 (503 for the second session)
let anonSrv: Srv; // no [auth]: sessions are anonymous
let echo: ReturnType<typeof echoServer>;
const clients: WasmnetClient[] = [];

/** A client that is disconnected after the file, whatever the test did. */
function client(url: string, options: ConstructorParameters<typeof WasmnetClient>[1] = {}): WasmnetClient {
  const c = new WasmnetClient(url, options);
  clients.push(c);
  return c;
}

const hs256 = (sub: string, over: Partial<Parameters<typeof createToken>[0]> = {}) => createToken({ secret, sub, ttlSecs: 300, aud: "wasmnet", ...over });

/** The error ready() rejects with (fails the test if it resolves). */
async function refusal(c: WasmnetClient): Promise<WasmnetError> {
  try {
    await c.ready();
  } catch (e) {
    expect(e).toBeInstanceOf(WasmnetError);
    return e as WasmnetError;
  }
  throw new Error("ready() resolved; a refusal was expected");
}

/** A fetch that records the URLs and init the client asked with. */
function recordingFetch() {
  const calls: { url: string; init: RequestInit | undefined }[] = [];
  const f = ((input: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: String(input), init });
    return fetch(input, init);
  }) as typeof fetch;
  return { calls, fetch: f };
}

async function echoOnce(c: WasmnetClient, text: string): Promise<string> {
  const id = await c.connect("127.0.0.1", echo.port);
  let got = "";
  const done = new Promise<void>((resolve) =>
    c.onData(id, (d) => {
      got += new TextDecoder().decode(d);
      if (got.length >= text.length) resolve();
    }),
  );
  c.send(id, text);
  await done;
  c.close(id);
  return got;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "wasmnet-client-auth-"));
  secret = crypto.getRandomValues(new Uint8Array(32));
  writeFileSync(join(dir, "secret.key"), secret);
  const keys = await generateKeys({ alg: "EdDSA", outDir: join(dir, "ed") });
  privateJwk = JSON.parse(readFileSync(keys.privateFile, "utf8"));
  const network = '[network]\ndeny = ["*:1-6"]\nallow = ["*"]\n';
  const auth = `[auth]\nrequired = true\naudience = "wasmnet"\nhs256_secret_file = ${JSON.stringify(join(dir, "secret.key"))}\njwks_file = ${JSON.stringify(keys.publicFile)}\n`;
  const files = {
    auth: `${network}${auth}[profiles.free.limits]\nmax_sessions_per_identity = 1\n`,
    origin: `${network}[server]\nallowed_origins = ["https://app.example"]\n`,
    full: `${network}[limits]\nmax_sessions = 1\n`,
  };
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, `${name}.toml`), text);
  echo = echoServer();
  authSrv = await startServer({ policy: join(dir, "auth.toml") });
  originSrv = await startServer({ policy: join(dir, "origin.toml") });
  fullSrv = await startServer({ policy: join(dir, "full.toml") });
  anonSrv = await startServer({ noPolicy: true });
});

afterAll(async () => {
  for (const c of clients) c.disconnect();
  for (const s of [authSrv, originSrv, fullSrv, anonSrv]) await s?.stop();
  echo?.stop();
  rmSync(dir, { recursive: true, force: true });
  process.off("unhandledRejection", onUnhandled);
  expect(unhandled).toEqual([]);
});

describe("a token the server accepts", () => {
  test("HS256 token in the subprotocol form: wasmnet selected, identity from the hello answer, echo works", async () => {
    const c = client(authSrv.wsUrl, { token: await hs256("alice") });
    await c.ready();
    expect(c.webSocket.protocol).toBe("wasmnet");
    expect(c.version).toBe(2);
    expect(c.identity).toBe("alice");
    expect(c.profile).toBeNull();
    expect(await echoOnce(c, "hello as alice")).toBe("hello as alice");
    c.disconnect();
  });

  test("EdDSA token selecting a profile: profile visible, binary framing", async () => {
    const token = await createToken({ privateJwk, sub: "bob", profile: "free", ttlSecs: 300, aud: "wasmnet" });
    const c = client(authSrv.wsUrl, { token, binary: true });
    await c.ready();
    expect([c.identity, c.profile]).toEqual(["bob", "free"]);
    expect(await echoOnce(c, "bob here")).toBe("bob here");
    c.disconnect();
  });

  test("anonymous session: identity and profile are null; a version-1 session leaves them undefined", async () => {
    const a = client(anonSrv.wsUrl);
    await a.ready();
    expect([a.identity, a.profile]).toEqual([null, null]);
    a.disconnect();
    const v1 = client(anonSrv.wsUrl, { version: 1 });
    await v1.ready();
    expect([v1.identity, v1.profile]).toEqual([undefined, undefined]);
    v1.disconnect();
  });

  test("a token that cannot be a subprotocol travels as ?token= (and is refused here with the server's reason)", async () => {
    const probe = recordingFetch();
    const c = client(authSrv.wsUrl, { token: "not a jwt", fetch: probe.fetch });
    const e = await refusal(c);
    expect([e.code, e.status, e.message]).toEqual(["EAUTH", 401, "malformed token: expected three dot-separated parts"]);
    expect(new URL(c.webSocket.url).searchParams.get("token")).toBe("not a jwt");
    expect(c.webSocket.protocol).toBe("");
  });
});

describe("refused sessions are typed errors with the server's reason", () => {
  test("expired token: EAUTH 401 'token has expired', learned by exactly one plain GET with ?token=", async () => {
    const token = await hs256("carol", { ttlSecs: 60, nowSecs: Math.floor(Date.now() / 1000) - 3600 });
    const probe = recordingFetch();
    const c = client(authSrv.wsUrl, { token, fetch: probe.fetch });
    const e = await refusal(c);
    expect([e.code, e.status, e.message]).toEqual(["EAUTH", 401, "token has expired"]);
    expect(probe.calls.length).toBe(1);
    const asked = new URL(probe.calls[0]!.url);
    expect(asked.protocol).toBe("http:");
    expect(`${asked.host}${asked.pathname}`).toBe(`127.0.0.1:${authSrv.port}/`);
    expect(asked.searchParams.getAll("token")).toEqual([token]);
    // No custom headers: a cross-origin page's GET stays a simple request (no CORS preflight).
    expect(probe.calls[0]!.init?.headers).toBeUndefined();
    expect(probe.calls[0]!.init?.method).toBe("GET");
    // Operations made while the answer was awaited fail with the same error.
    expect((await c.connect("127.0.0.1", echo.port).catch((x: WasmnetError) => x)) as WasmnetError).toMatchObject({ code: "EAUTH" });
  });

  test("without the GET (fetch: null) the same refusal is only ECLOSED", async () => {
    const token = await hs256("carol", { ttlSecs: 60, nowSecs: Math.floor(Date.now() / 1000) - 3600 });
    const e = await refusal(client(authSrv.wsUrl, { token, fetch: null }));
    expect(e.code).toBe("ECLOSED");
    expect(e.status).toBeUndefined();
  });

  test("wrong audience, missing token when required, unknown profile, bad signature: EAUTH 401 with each reason", async () => {
    const wrongAud = await hs256("dave", { aud: "someone-else" });
    const unknownProfile = await hs256("dave", { profile: "gold" });
    const otherSecret = await createToken({ secret: crypto.getRandomValues(new Uint8Array(32)), sub: "dave", ttlSecs: 300, aud: "wasmnet" });
    const cases: [string | undefined, string][] = [
      [wrongAud, "token is for another audience"],
      [undefined, "a token is required"],
      [unknownProfile, 'unknown profile "gold"'],
      [otherSecret, "signature does not verify"],
    ];
    for (const [token, reason] of cases) {
      const e = await refusal(client(authSrv.wsUrl, token === undefined ? {} : { token }));
      expect([e.code, e.status, e.message]).toEqual(["EAUTH", 401, reason]);
    }
  });

  test("a token over 8 KiB: EAUTH with status 431", async () => {
    const e = await refusal(client(authSrv.wsUrl, { token: "a".repeat(9000) }));
    expect([e.code, e.status, e.message]).toEqual(["EAUTH", 431, "token is larger than 8 KiB"]);
  });

  test("origin not allowed: EREFUSED 403 with the reason", async () => {
    const e = await refusal(client(originSrv.wsUrl));
    expect([e.code, e.status, e.message]).toEqual(["EREFUSED", 403, "origin (none) is not in allowed_origins"]);
  });

  test("second session of an identity capped at one: EREFUSED 429; once the first ends, a new one is let in", async () => {
    const token = await createToken({ privateJwk, sub: "erin", profile: "free", ttlSecs: 300, aud: "wasmnet" });
    const first = client(authSrv.wsUrl, { token });
    await first.ready();
    const e = await refusal(client(authSrv.wsUrl, { token }));
    expect([e.code, e.status, e.message]).toEqual(["EREFUSED", 429, "max_sessions_per_identity (1) reached for erin"]);
    // The GET that learned this did not hold a session: the first one's end frees the identity.
    first.disconnect();
    let again: WasmnetClient | undefined;
    await waitFor(
      async () => {
        again?.disconnect();
        again = client(authSrv.wsUrl, { token });
        return again.ready().then(
          () => true,
          () => false,
        );
      },
      "a new session for erin after the first ended",
    );
    expect(again!.identity).toBe("erin");
    again!.disconnect();
  });

  test("server at max_sessions: EREFUSED 503 with the reason", async () => {
    const first = client(fullSrv.wsUrl);
    await first.ready();
    const e = await refusal(client(fullSrv.wsUrl));
    expect([e.code, e.status, e.message]).toEqual(["EREFUSED", 503, "max_sessions (1) reached"]);
    first.disconnect();
  });

  test("nothing listening: ECLOSED (the GET fails too)", async () => {
    const s = await startServer({ noPolicy: true });
    const url = s.wsUrl;
    await s.stop();
    const e = await refusal(client(url, { token: await hs256("frank") }));
    expect(e.code).toBe("ECLOSED");
  });
});

describe("reading a refusal", () => {
  test("bearerDescription: quoted with escapes, bare, absent", () => {
    expect(bearerDescription('Bearer error="invalid_token", error_description="token has expired"')).toBe("token has expired");
    expect(bearerDescription('Bearer error="invalid_token", error_description="unknown profile \\"gold\\""')).toBe('unknown profile "gold"');
    expect(bearerDescription("Bearer error=invalid_token, error_description=expired")).toBe("expired");
    expect(bearerDescription('Bearer realm="x"')).toBeNull();
  });

  test("probeUrl: ws→http, wss→https, the token added once, the fragment dropped", () => {
    expect(probeUrl("ws://h:9000/", "a.b.c")).toBe("http://h:9000/?token=a.b.c");
    expect(probeUrl("wss://h/x?y=1#f", "a.b.c")).toBe("https://h/x?y=1&token=a.b.c");
    expect(probeUrl("ws://h/?token=a.b.c", "a.b.c")).toBe("http://h/?token=a.b.c");
    expect(probeUrl("ws://h/?token=old", undefined)).toBe("http://h/?token=old");
    expect(probeUrl("ftp://h/", "t")).toBeNull();
  });
});
