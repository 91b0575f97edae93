// wsproxy end to end: one WebSocket = one TCP connection, target from the path, through the
// same session as the wasmnet protocol (policy, limits), to real targets on loopback.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { parsePolicy } from "../src/policy/load.ts";
import { makeRouter } from "../src/server/routes.ts";
import { parseHostPortSegment as parseHostPort } from "../src/server/routes.ts";
import { startServer } from "./helpers/server.ts";
import { echoServer, freePort, makePayload, sha256, sinkServer } from "./helpers/targets.ts";
import { waitFor } from "./helpers/wait.ts";

let srv: Awaited<ReturnType<typeof startServer>>;
let strict: Awaited<ReturnType<typeof startServer>>;
const echo = echoServer();
const echo6 = echoServer("::1");
let base: string;

beforeAll(async () => {
  srv = await startServer({ noPolicy: true });
  strict = await startServer({});
  base = `ws://127.0.0.1:${srv.port}`;
});
afterAll(async () => {
  await srv.stop();
  await strict.stop();
  echo.stop();
  echo6.stop();
});

interface Ws {
  ws: WebSocket;
  bytes(): number;
  data(): Uint8Array;
  closed: Promise<{ code: number; reason: string }>;
}

async function openWs(url: string): Promise<Ws> {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const chunks: Uint8Array[] = [];
  let n = 0;
  ws.onmessage = (m) => {
    const b = typeof m.data === "string" ? new TextEncoder().encode(m.data) : new Uint8Array(m.data as ArrayBuffer);
    chunks.push(b);
    n += b.length;
  };
  const closed = new Promise<{ code: number; reason: string }>((r) => (ws.onclose = (c) => r({ code: c.code, reason: c.reason })));
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener("error", () => reject(new Error("websocket failed to open")), { once: true });
  });
  return { ws, bytes: () => n, data: () => Buffer.concat(chunks), closed };
}

const send = (ws: WebSocket, b: Uint8Array | string) => ws.send(b as Uint8Array<ArrayBuffer> | string);

describe("echo", () => {
  for (const [name, path] of [
    ["/ws/HOST:PORT", () => `/ws/127.0.0.1:${echo.port}`],
    ["bare /HOST:PORT", () => `/127.0.0.1:${echo.port}`],
    ["/wisp/HOST:PORT (wisp-js server convention)", () => `/wisp/127.0.0.1:${echo.port}`],
    ["/ws/[::1]:PORT", () => `/ws/[::1]:${echo6.port}`],
    ["percent-encoded /ws/%5B::1%5D:PORT", () => `/ws/%5B::1%5D:${echo6.port}`],
  ] as const)
    test(name, async () => {
      const c = await openWs(base + path());
      send(c.ws, new Uint8Array([1, 2, 3]));
      send(c.ws, "text frames are sent as UTF-8");
      await waitFor(() => c.bytes() === 3 + 29, { what: "the 32 bytes echoed", detail: c.bytes });
      expect([...c.data().subarray(0, 3)]).toEqual([1, 2, 3]);
      expect(new TextDecoder().decode(c.data().subarray(3))).toBe("text frames are sent as UTF-8");
      c.ws.close();
    });

  test("8 MiB up and back intact (upload paced by the target)", async () => {
    const c = await openWs(`${base}/ws/127.0.0.1:${echo.port}`);
    const payload = makePayload(8 * 1024 * 1024, 11);
    for (let o = 0; o < payload.length; o += 64 * 1024) send(c.ws, payload.subarray(o, o + 64 * 1024));
    await waitFor(() => c.bytes() === payload.length, { what: "8 MiB echoed", timeoutMs: 20_000, detail: c.bytes });
    expect(sha256(c.data())).toBe(sha256(payload));
    c.ws.close();
  });

  test("16 MiB download, then close 1000 when the target ends", async () => {
    const payload = makePayload(16 * 1024 * 1024, 12);
    type St = { off: number };
    const write = (s: Socket<St>) => {
      while (s.data.off < payload.length) {
        const w = s.write(payload.subarray(s.data.off, s.data.off + 256 * 1024));
        if (w <= 0) return;
        s.data.off += w;
      }
      s.end();
    };
    const l = Bun.listen<St>({ hostname: "127.0.0.1", port: 0, socket: { open: (s) => ((s.data = { off: 0 }), write(s)), drain: write, data() {}, error() {} } });
    const c = await openWs(`${base}/ws/127.0.0.1:${l.port}`);
    expect((await c.closed).code).toBe(1000);
    expect(c.bytes()).toBe(payload.length);
    expect(sha256(c.data())).toBe(sha256(payload));
    l.stop(true);
  });

  test("closing the WebSocket still delivers what was sent, then FIN", async () => {
    const sink = sinkServer();
    const c = await openWs(`${base}/ws/127.0.0.1:${sink.port}`);
    const payload = makePayload(2 * 1024 * 1024, 13);
    for (let o = 0; o < payload.length; o += 128 * 1024) send(c.ws, payload.subarray(o, o + 128 * 1024));
    await waitFor(() => c.ws.bufferedAmount === 0, { what: "the WebSocket's send buffer to drain", timeoutMs: 20_000 });
    c.ws.close();
    await waitFor(() => sink.eofs === 1, { what: "the target to see EOF", timeoutMs: 20_000, detail: () => sink.received });
    expect(sink.received).toBe(payload.length);
    sink.stop();
  });
});

describe("refusals", () => {
  test("a policy-denied target closes with 4003 and the rule's reason", async () => {
    const c = await openWs(`ws://127.0.0.1:${strict.port}/ws/127.0.0.1:${echo.port}`);
    const { code, reason } = await c.closed;
    expect(code).toBe(4003);
    expect(reason).toStartWith("denied: ");
  });

  test("a denied name closes with 4003 too", async () => {
    const c = await openWs(`ws://127.0.0.1:${strict.port}/ws/localhost:${echo.port}`);
    expect((await c.closed).code).toBe(4003);
  });

  test("a refused connection closes with 1014 ECONNREFUSED", async () => {
    const c = await openWs(`${base}/ws/127.0.0.1:${freePort()}`);
    const { code, reason } = await c.closed;
    expect(code).toBe(1014);
    expect(reason).toStartWith("ECONNREFUSED: ");
  });

  test("a frame over max_message_bytes closes with 1008 ELIMIT", async () => {
    const small = await startServer({ policy: parsePolicy(`[network]\ndeny = []\n[limits]\nmax_message_bytes = 4096\n`, "wsproxy-test.toml") });
    const c = await openWs(`ws://127.0.0.1:${small.port}/ws/127.0.0.1:${echo.port}`);
    send(c.ws, new Uint8Array(8192));
    const { code, reason } = await c.closed;
    expect(code).toBe(1008);
    expect(reason).toStartWith("ELIMIT: ");
    await small.stop();
  });

  test("malformed paths are rejected at upgrade with 400", async () => {
    for (const path of ["/ws/", "/ws/example.com", "/ws/example.com:0", "/ws/example.com:65536", "/ws/example.com:http", "/ws/a/b:80", "/ws/::1:80", "/ws/[::1:80", "/ws/:80", "/foo:bar", "/wisp/x:y", "/ws/%zz:80", "/ws/a%20b:80"]) {
      const r = await fetch(`http://127.0.0.1:${srv.port}${path}`, { headers: { upgrade: "websocket", connection: "Upgrade", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" } });
      expect([path, r.status]).toEqual([path, 400]);
    }
    const ws = new WebSocket(`${base}/ws/nonsense`);
    const failed = await new Promise<boolean>((r) => ((ws.onerror = () => r(true)), (ws.onopen = () => r(false))));
    expect(failed).toBe(true);
  });

  test("sessions are released when wsproxy sockets close", async () => {
    const c = await openWs(`${base}/ws/127.0.0.1:${echo.port}`);
    c.ws.close();
    await c.closed;
    await waitFor(() => srv.handler.ctx.metrics.sessions === 0, "the session count back to 0");
  });
});

describe("path parsing and routing", () => {
  test("parseHostPort", () => {
    expect(parseHostPort("example.com:443")).toEqual({ host: "example.com", port: 443 });
    expect(parseHostPort("[2001:db8::1]:8080")).toEqual({ host: "2001:db8::1", port: 8080 });
    expect(parseHostPort("%5B::1%5D:22")).toEqual({ host: "::1", port: 22 });
    for (const bad of ["", ":80", "host", "host:", "host:0", "host:65536", "host:1e3", "::1:80", "[::1]80", "[host]:80", "a b:80", "a@b:80", `${"a".repeat(254)}:80`, "%E0%A4%A:80"])
      expect([bad, parseHostPort(bad)]).toEqual([bad, null]);
  });

  test("router", () => {
    const r = makeRouter();
    expect(r("/")).toEqual({ kind: "wasmnet" });
    expect(r("/anything/else")).toEqual({ kind: "wasmnet" });
    expect(r("/wisp/")).toEqual({ kind: "wisp" });
    expect(r("/wisp")).toEqual({ kind: "wisp" });
    expect(r("/ws/h:1")).toEqual({ kind: "wsproxy", target: { host: "h", port: 1 } });
    expect(r("/h:1")).toEqual({ kind: "wsproxy", target: { host: "h", port: 1 } });
    expect(r("/wisp/h:1")).toEqual({ kind: "wsproxy", target: { host: "h", port: 1 } });
    expect(r("/ws/h").kind).toBe("bad");
    expect(r("/other/h:1")).toEqual({ kind: "wasmnet" });
    const custom = makeRouter({ wispPrefix: "tunnel", wsproxyPrefix: "/proxy/" });
    expect(custom("/tunnel/")).toEqual({ kind: "wisp" });
    expect(custom("/wisp/")).toEqual({ kind: "wasmnet" });
    expect(custom("/proxy/h:2")).toEqual({ kind: "wsproxy", target: { host: "h", port: 2 } });
    const off = makeRouter({ wispPrefix: false, wsproxyPrefix: false });
    expect(off("/wisp/")).toEqual({ kind: "wasmnet" });
    expect(off("/h:1")).toEqual({ kind: "wasmnet" });
  });
});
