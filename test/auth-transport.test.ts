// Where a token travels (query parameter, `wasmnet.bearer.` subprotocol), the upgrade decision,
// and keeping the token out of responses and log lines. The handshake tests use a real server on
// loopback and real WebSocket clients.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { authFailureResponse, authenticateRequest } from "../src/auth/authenticate.ts";
import type { AuthConfig } from "../src/auth/config.ts";
import { createToken } from "../src/auth/issue.ts";
import { type KeyRing, loadKeyRing } from "../src/auth/keys.ts";
import { BEARER_PROTOCOL_PREFIX, redactProtocols, redactedPath, splitProtocols, tokenFromRequest } from "../src/auth/transport.ts";
import { createLogger } from "../src/log.ts";

const req = (path: string, protocols?: string) =>
  new Request(`http://127.0.0.1${path}`, { headers: protocols === undefined ? {} : { "sec-websocket-protocol": protocols } });

describe("tokenFromRequest", () => {
  test("no token: null, every offered protocol kept", () => {
    expect(tokenFromRequest(req("/", "wasmnet, wisp-v2"))).toEqual({ token: null, protocols: ["wasmnet", "wisp-v2"], problem: null });
    expect(tokenFromRequest(req("/"))).toEqual({ token: null, protocols: [], problem: null });
  });

  test("query parameter on any path", () => {
    for (const path of ["/?token=aaa.bbb.ccc", "/wisp/?token=aaa.bbb.ccc", "/posix/?x=1&token=aaa.bbb.ccc"]) {
      expect(tokenFromRequest(req(path))).toEqual({ token: "aaa.bbb.ccc", protocols: [], problem: null });
    }
  });

  test("subprotocol form among several offered; bearer entries are removed from the list", () => {
    const r = tokenFromRequest(req("/", `wasmnet, ${BEARER_PROTOCOL_PREFIX}aaa.bbb.ccc,  other `));
    expect(r).toEqual({ token: "aaa.bbb.ccc", protocols: ["wasmnet", "other"], problem: null });
    // Prefix matched without regard to case, so no variant can be selected and echoed.
    expect(tokenFromRequest(req("/", "Wasmnet.Bearer.aaa.bbb.ccc"))).toEqual({ token: "aaa.bbb.ccc", protocols: [], problem: null });
  });

  test("the same token in both forms is fine; different tokens are a problem", () => {
    expect(tokenFromRequest(req("/?token=t1.t1.t1", "wasmnet, wasmnet.bearer.t1.t1.t1")).token).toBe("t1.t1.t1");
    for (const r of [
      tokenFromRequest(req("/?token=t1.t1.t1", "wasmnet, wasmnet.bearer.t2.t2.t2")),
      tokenFromRequest(req("/?token=t1.t1.t1&token=t2.t2.t2")),
      tokenFromRequest(req("/", "wasmnet.bearer.t1.t1.t1, wasmnet.bearer.t2.t2.t2")),
      tokenFromRequest(req("/?token=", "wasmnet.bearer.t2.t2.t2")),
    ]) {
      expect(r.token).toBeNull();
      expect(r.problem).toBe("the request carries two different tokens");
    }
  });

  test("an empty token is still a token (refused later, not treated as absent)", () => {
    expect(tokenFromRequest(req("/?token=")).token).toBe("");
    expect(tokenFromRequest(req("/", "wasmnet.bearer.")).token).toBe("");
  });

  test("splitProtocols trims and drops empty entries", () => {
    expect(splitProtocols(" a ,, b,c ")).toEqual(["a", "b", "c"]);
    expect(splitProtocols(null)).toEqual([]);
  });
});

describe("log redaction", () => {
  test("redactedPath drops the query and fragment", () => {
    expect(redactedPath("http://h:8080/wisp/?token=secret.secret.secret#frag")).toBe("/wisp/");
    expect(redactedPath("/posix/?token=x")).toBe("/posix/");
    expect(redactedPath(new URL("http://h/?token=x"))).toBe("/");
  });

  test("redactProtocols replaces bearer entries anywhere in the header", () => {
    expect(redactProtocols("wasmnet, wasmnet.bearer.aaa.bbb.ccc")).toBe("wasmnet, wasmnet.bearer.[redacted]");
    expect(redactProtocols("WASMNET.BEARER.aaa.bbb.ccc,wisp-v2")).toBe("wasmnet.bearer.[redacted],wisp-v2");
    expect(redactProtocols("junk wasmnet.bearer.aaa.bbb.ccc")).toBe("junk wasmnet.bearer.[redacted]");
    expect(redactProtocols(null)).toBeNull();
  });
});

describe("authenticateRequest and the handshake", () => {
  let dir: string;
  let keys: KeyRing;
  let server: ReturnType<typeof Bun.serve>;
  // Printable, so the key reader's trailing-newline trim can never shorten it below 32 bytes.
  const secret = new TextEncoder().encode(Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex"));
  const logLines: string[] = [];
  const auth = (over: Partial<AuthConfig> = {}): AuthConfig => ({
    required: true,
    audience: "wasmnet",
    issuers: null,
    hs256SecretFile: join(dir, "secret.key"),
    jwksFile: null,
    leewaySecs: 30,
    ...over,
  });
  const issued: string[] = [];
  const token = async (sub = "alice", ttlSecs = 300) => {
    const t = await createToken({ secret, sub, ttlSecs, aud: "wasmnet", profile: "free" });
    issued.push(t);
    return t;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "wasmnet-auth-transport-"));
    writeFileSync(join(dir, "secret.key"), secret);
    keys = await loadKeyRing(auth());
    const log = createLogger("debug", (l) => logLines.push(l));
    // A stand-in for the server's upgrade path: decide, log without the token, select a real
    // subprotocol explicitly (never the bearer entry), upgrade.
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request, srv) {
        const a = await authenticateRequest(request, auth(), keys);
        log.info("upgrade", {
          path: redactedPath(request.url),
          protocols: redactProtocols(request.headers.get("sec-websocket-protocol")),
          ok: a.ok,
          ...(a.ok ? { identity: a.identity } : { reason: a.description }),
        });
        if (!a.ok) return authFailureResponse(a);
        const headers: Record<string, string> = {};
        if (a.protocols.includes("wasmnet")) headers["Sec-WebSocket-Protocol"] = "wasmnet";
        if (srv.upgrade(request, { data: { identity: a.identity }, headers })) return undefined;
        return new Response("not a websocket", { status: 400 });
      },
      websocket: {
        data: {} as { identity: string | null },
        message(ws) {
          ws.send(String(ws.data.identity));
        },
      },
    });
  });

  afterAll(async () => {
    await server.stop(true);
    rmSync(dir, { recursive: true, force: true });
  });

  test("decision table: none, good, bad, conflicting; required or not", async () => {
    const good = await token();
    const expired = await createToken({ secret, sub: "a", ttlSecs: 60, aud: "wasmnet", nowSecs: 1_000_000 });
    expect(await authenticateRequest(req("/"), auth(), keys)).toEqual({ ok: false, status: 401, description: "a token is required", protocols: [] });
    expect(await authenticateRequest(req("/", "wisp-v2"), auth({ required: false }), keys)).toEqual({
      ok: true,
      identity: null,
      profile: null,
      allow: null,
      protocols: ["wisp-v2"],
    });
    expect(await authenticateRequest(req(`/?token=${good}`), auth(), keys)).toMatchObject({ ok: true, identity: "alice", profile: "free" });
    expect(await authenticateRequest(req(`/?token=${expired}`), auth({ required: false }), keys)).toMatchObject({
      ok: false,
      status: 401,
      description: "token has expired",
    });
    expect(await authenticateRequest(req(`/?token=${good}`, `wasmnet.bearer.${await token("bob")}`), auth(), keys)).toMatchObject({
      ok: false,
      status: 401,
      description: "the request carries two different tokens",
    });
    expect(await authenticateRequest(req(`/?token=${"a".repeat(9000)}`), auth(), keys)).toMatchObject({ ok: false, status: 431 });
  });

  test("authFailureResponse: 401 with a Bearer challenge, 431 without", async () => {
    const r401 = authFailureResponse({ status: 401, description: "token has expired" });
    expect(r401.status).toBe(401);
    expect(r401.headers.get("www-authenticate")).toBe('Bearer error="invalid_token", error_description="token has expired"');
    expect(await r401.text()).toBe("token has expired\n");
    const r431 = authFailureResponse({ status: 431, description: "token is larger than 8 KiB" });
    expect(r431.status).toBe(431);
    expect(r431.headers.get("www-authenticate")).toBeNull();
  });

  test("a WebSocket client offering wasmnet plus the bearer form gets wasmnet selected and is the token's identity", async () => {
    const t = await token("carol");
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/`, ["wasmnet", `${BEARER_PROTOCOL_PREFIX}${t}`]);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error("handshake failed"));
    });
    expect(ws.protocol).toBe("wasmnet");
    const reply = new Promise<string>((r) => (ws.onmessage = (e) => r(String(e.data))));
    ws.send("who");
    expect(await reply).toBe("carol");
    ws.close();
  });

  test("the 101 response never carries the token; a refused one answers 401 with the reason", async () => {
    const t = await token("dave");
    const handshake = (path: string, protocols: string) =>
      new Promise<string>(async (resolve) => {
        let text = "";
        const s = await Bun.connect({
          hostname: "127.0.0.1",
          port: server.port as number,
          socket: {
            data(sock, d) {
              text += new TextDecoder().decode(d);
              if (text.includes("\r\n\r\n")) {
                sock.terminate();
                resolve(text);
              }
            },
            close() {
              resolve(text);
            },
          },
        });
        const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
        s.write(
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\n` +
            `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${protocols}\r\n\r\n`,
        );
      });
    // Bearer entry first: a server that let the runtime pick would echo it.
    const ok = await handshake("/", `${BEARER_PROTOCOL_PREFIX}${t}, wasmnet`);
    expect(ok).toStartWith("HTTP/1.1 101");
    expect(ok.toLowerCase()).toContain("sec-websocket-protocol: wasmnet\r\n");
    expect(ok).not.toContain(t.split(".")[2] as string);
    const bad = await handshake("/", `${BEARER_PROTOCOL_PREFIX}${t.slice(0, -4)}AAAA, wasmnet`);
    expect(bad).toStartWith("HTTP/1.1 401");
    expect(bad).toContain('error_description="signature does not verify"');
    expect(bad).not.toContain(t.split(".")[1] as string);
  });

  test("query form over fetch: 401 with WWW-Authenticate before any upgrade, and no token in any log line", async () => {
    const t = await token("erin");
    const r = await fetch(`http://127.0.0.1:${server.port}/wisp/?token=${t}x`);
    expect(r.status).toBe(401);
    expect(r.headers.get("www-authenticate")).toContain('error="invalid_token"');
    const none = await fetch(`http://127.0.0.1:${server.port}/`);
    expect(none.headers.get("www-authenticate")).toBe('Bearer error="invalid_token", error_description="a token is required"');
    expect(logLines.length).toBeGreaterThan(3);
    const all = logLines.join("");
    expect(all).toContain('"path":"/wisp/"');
    expect(all).toContain("wasmnet.bearer.[redacted]");
    // The header segment is shared by every HS256 token; the claims and signature are not.
    for (const tok of issued) for (const seg of tok.split(".").slice(1)) expect(all).not.toContain(seg);
  });
});
