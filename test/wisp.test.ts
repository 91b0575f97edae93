// Wisp end to end: the real @mercuryworkshop/wisp-js client against a real wasmnet server, to
// real TCP/UDP targets on loopback; plus a packet-level client for handshake details, flow
// control and malformed input.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket, udp } from "bun";
// @ts-expect-error wisp-js ships no type declarations
import { extensions as wjsExt } from "@mercuryworkshop/wisp-js/client";
import { parsePolicy } from "../src/policy/load.ts";
import { WISP_CLOSE, WISP_EXT, type WispPacket } from "../src/protocol/wisp.ts";
import { startServer } from "./helpers/server.ts";
import { echoServer, freePort, makePayload, sha256, sourceServer, udpEcho, udpPeer } from "./helpers/targets.ts";
import { RawWisp, track, wispJsConnect } from "./helpers/wisp.ts";
import { waitFor } from "./helpers/wait.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);



let open: Awaited<ReturnType<typeof startServer>>;
let strict: Awaited<ReturnType<typeof startServer>>;
const echo = echoServer();
let uecho: Awaited<ReturnType<typeof udpEcho>>;
let wispUrl: string;
let strictUrl: string;

beforeAll(async () => {
  open = await startServer({
    noPolicy: true,
    wispMotd: "welcome to wasmnet",
    resolver: async (name) => (name === "echo.test" ? ["127.0.0.1"] : []),
  });
  strict = await startServer({}); // the default policy: loopback is nonpublic, so denied
  uecho = await udpEcho();
  wispUrl = `ws://127.0.0.1:${open.port}/wisp/`;
  strictUrl = `ws://127.0.0.1:${strict.port}/wisp/`;
});
afterAll(async () => {
  await open.stop();
  await strict.stop();
  echo.stop();
  uecho.socket.close();
});

describe.each([1, 2] as const)("wisp-js client, Wisp v%d", (v) => {
  test("negotiates the version it asked for", async () => {
    const c = await wispJsConnect(wispUrl, v);
    expect(c.wisp_version).toBe(v);
    expect(c.max_buffer_size).toBe(128);
    if (v === 2) {
      expect(c.server_motd).toBe("welcome to wasmnet");
      expect(c.udp_enabled).toBe(true);
    }
    c.close();
  });

  test("TCP echo", async () => {
    const c = await wispJsConnect(wispUrl, v);
    const s = c.create_stream("127.0.0.1", echo.port);
    const t = track(s);
    s.send(enc(`hello over wisp v${v}`));
    await t.waitBytes(`hello over wisp v${v}`.length);
    expect(dec(t.data())).toBe(`hello over wisp v${v}`);
    s.close(WISP_CLOSE.voluntary);
    c.close();
  });

  test("TCP echo by host name (resolved by the server)", async () => {
    const c = await wispJsConnect(wispUrl, v);
    const s = c.create_stream("echo.test", echo.port);
    const t = track(s);
    s.send(enc("by name"));
    await t.waitBytes(7);
    expect(dec(t.data())).toBe("by name");
    c.close();
  });

  test("8 parallel streams, distinct data, each intact", async () => {
    const c = await wispJsConnect(wispUrl, v);
    const size = 512 * 1024;
    const chunk = 16 * 1024;
    const runs = Array.from({ length: 8 }, async (_, i) => {
      const payload = makePayload(size, 100 + i);
      const s = c.create_stream("127.0.0.1", echo.port);
      const t = track(s);
      for (let o = 0; o < size; o += chunk) s.send(payload.slice(o, o + chunk));
      await t.waitBytes(size);
      expect(t.bytes).toBe(size);
      expect(sha256(t.data())).toBe(sha256(payload));
      s.close(WISP_CLOSE.voluntary);
    });
    await Promise.all(runs);
    c.close();
  });

  test("16 MiB download intact, then CLOSE 0x02 when the target ends", async () => {
    const src = sourceServer(makePayload(16 * 1024 * 1024, 5));
    const c = await wispJsConnect(wispUrl, v);
    const s = c.create_stream("127.0.0.1", src.port);
    const t = track(s);
    expect(await t.closed).toBe(WISP_CLOSE.voluntary);
    expect(t.bytes).toBe(16 * 1024 * 1024);
    expect(sha256(t.data())).toBe(sha256(src.pattern));
    c.close();
    src.stop();
  });

  test("UDP echo", async () => {
    const c = await wispJsConnect(wispUrl, v);
    const s = c.create_stream("127.0.0.1", uecho.port, "udp");
    const t = track(s);
    // Sent at once, before the server has bound the socket: held, then sent.
    s.send(enc("datagram one"));
    await t.waitBytes(12);
    s.send(enc("datagram two"));
    await t.waitBytes(24);
    expect(t.chunks.map(dec)).toEqual(["datagram one", "datagram two"]);
    s.close(WISP_CLOSE.voluntary);
    c.close();
  });

  test("refused connection closes the stream with 0x44", async () => {
    const c = await wispJsConnect(wispUrl, v);
    const t = track(c.create_stream("127.0.0.1", freePort()));
    expect(await t.closed).toBe(WISP_CLOSE.refused);
    c.close();
  });

  test("unresolvable name closes with 0x42", async () => {
    const c = await wispJsConnect(wispUrl, v);
    const t = track(c.create_stream("nowhere.test", 80));
    expect(await t.closed).toBe(WISP_CLOSE.unreachable);
    c.close();
  });

  test("policy-denied destination closes with 0x48 (TCP and UDP); the connection goes on", async () => {
    const c = await wispJsConnect(strictUrl, v);
    expect(await track(c.create_stream("127.0.0.1", echo.port)).closed).toBe(WISP_CLOSE.blocked);
    expect(await track(c.create_stream("localhost", echo.port)).closed).toBe(WISP_CLOSE.blocked);
    expect(await track(c.create_stream("127.0.0.1", uecho.port, "udp")).closed).toBe(WISP_CLOSE.blocked);
    expect(await track(c.create_stream("127.0.0.1", freePort())).closed).toBe(WISP_CLOSE.blocked);
    c.close();
  });
});

test("wisp-js's WispWebSocket polyfill (wsproxy-style URL carried over Wisp)", async () => {
  const { client } = await import("@mercuryworkshop/wisp-js/client" as string);
  const ws = new client.WispWebSocket(`ws://127.0.0.1:${open.port}/wisp/127.0.0.1:${echo.port}`);
  ws.binaryType = "arraybuffer";
  await new Promise((r) => ws.addEventListener("open", r, { once: true }));
  const got = new Promise<ArrayBuffer>((r) => ws.addEventListener("message", (e: MessageEvent) => r(e.data), { once: true }));
  ws.send(enc("polyfill"));
  expect(dec(new Uint8Array(await got))).toBe("polyfill");
  ws.close();
});

describe("Wisp v2 handshake (packet level)", () => {
  test("INFO first; CONTINUE(0) only after the client's INFO", async () => {
    const c = await RawWisp.open(wispUrl, { v2: true, info: null });
    expect(c.serverInfo?.major).toBe(2);
    await Bun.sleep(50); // the server must wait for our INFO: give a premature CONTINUE 50 ms to (wrongly) show up
    expect(c.packets.some((p) => p.type === "continue")).toBe(false); // nothing before our INFO
    c.send({ type: "info", stream: 0, major: 2, minor: 0, extensions: [] });
    expect(await c.next((p) => p.type === "continue" && p.stream === 0)).toEqual({ type: "continue", stream: 0, remaining: 128 });
    c.close();
  });

  test("server INFO carries version 2.0 and its extensions", async () => {
    const ws = new WebSocket(wispUrl, ["wisp-v2"]);
    ws.binaryType = "arraybuffer";
    const first = await new Promise<Uint8Array>((r) => (ws.onmessage = (m) => r(new Uint8Array(m.data as ArrayBuffer))));
    expect(ws.protocol).toBe("wisp-v2");
    const { decodeWispPacket, decodeWispMotd } = await import("../src/protocol/wisp.ts");
    const d = decodeWispPacket(first);
    expect(d.ok && d.packet.type).toBe("info");
    if (d.ok && d.packet.type === "info") {
      expect([d.packet.stream, d.packet.major, d.packet.minor]).toEqual([0, 2, 0]);
      expect(d.packet.extensions.map((e) => e.id)).toEqual([WISP_EXT.udp, WISP_EXT.motd, WISP_EXT.streamConfirmation]);
      expect(decodeWispMotd(d.packet.extensions[1]!.payload)).toBe("welcome to wasmnet");
    }
    ws.close();
  });

  test("without a subprotocol the server speaks v1: CONTINUE(0) first, no INFO", async () => {
    const ws = new WebSocket(wispUrl);
    ws.binaryType = "arraybuffer";
    const first = await new Promise<Uint8Array>((r) => (ws.onmessage = (m) => r(new Uint8Array(m.data as ArrayBuffer))));
    expect(ws.protocol).toBe("");
    expect([...first]).toEqual([3, 0, 0, 0, 0, 128, 0, 0, 0]);
    ws.close();
  });

  test("stream-open confirmation: CONTINUE on the stream once connected, only when negotiated", async () => {
    const c = await RawWisp.open(wispUrl, { v2: true, info: [{ id: WISP_EXT.streamConfirmation, payload: new Uint8Array(0) }] });
    c.send({ type: "connect", stream: 5, streamType: 1, port: echo.port, host: "127.0.0.1" });
    expect(await c.next((p) => p.stream === 5)).toEqual({ type: "continue", stream: 5, remaining: 128 });
    c.close();

    const d = await RawWisp.open(wispUrl, { v2: true, info: [] });
    d.send({ type: "connect", stream: 5, streamType: 1, port: echo.port, host: "127.0.0.1" });
    d.send({ type: "data", stream: 5, data: enc("x") });
    await d.waitBytes(5, 1);
    expect(d.packets.filter((p) => p.stream === 5)).toEqual([]);
    d.close();
  });

  test("a datagram the session refuses (70,000 bytes) is dropped: the UDP stream and its socket go on, nothing leaks", async () => {
    const udpSockets = () => open.handler.ctx.metrics.sockets.udp;
    const before = udpSockets();
    const c = await RawWisp.open(wispUrl, { v2: true });
    try {
      c.keepData = true;
      c.send({ type: "connect", stream: 1, streamType: 2, port: uecho.port, host: "127.0.0.1" });
      c.send({ type: "data", stream: 1, data: enc("first") });
      await c.waitBytes(1, 5);
      expect(udpSockets()).toBe(before + 1);
      c.send({ type: "data", stream: 1, data: new Uint8Array(70_000) }); // over the UDP maximum of 65,507
      c.send({ type: "data", stream: 1, data: enc("after") });
      await c.waitBytes(1, 10);
      expect(c.packets.filter((p) => p.type === "close" && p.stream === 1)).toEqual([]);
      expect(dec((c.packets.filter((p) => p.type === "data" && p.stream === 1).at(-1) as Extract<WispPacket, { type: "data" }>).data)).toBe("after");
      expect(udpSockets()).toBe(before + 1);
      // Closing the stream lets its socket go: the count is back where it was.
      c.send({ type: "close", stream: 1, reason: WISP_CLOSE.voluntary });
      await waitFor(() => udpSockets() === before, { what: "the UDP socket closed with its stream", detail: () => udpSockets() - before });
    } finally {
      c.close();
    }
  });

  test("datagrams sent before the UDP socket is bound: at most a window's worth is kept, the rest dropped and counted", async () => {
    let resolve!: () => void;
    const lookedUp = new Promise<void>((r) => (resolve = r));
    const window = 64 * 1024;
    const server = await startServer({
      policy: parsePolicy(`[network]\ndeny = []\nmax_bandwidth_mbps = 0\n[limits]\nstream_buffer_bytes = ${window}\n`, "wisp-early.toml"),
      resolver: async () => {
        await lookedUp; // the socket is not bound until the test says so
        return ["127.0.0.1"];
      },
    });
    const peer = await udpPeer("127.0.0.1");
    const c = await RawWisp.open(`ws://127.0.0.1:${server.port}/wisp/`, { v2: true });
    try {
      const unbound = () => server.handler.ctx.metrics.udpDrops.get("unbound") ?? 0;
      c.send({ type: "connect", stream: 1, streamType: 2, port: peer.port, host: "slow.test" });
      // 16 × 16,000 bytes: 4 fit a 64 KiB window, 12 are dropped (the count alone would keep all).
      for (let i = 0; i < 16; i++) c.send({ type: "data", stream: 1, data: new Uint8Array(16_000).fill(i) });
      await waitFor(() => unbound() === 12, { what: "12 early datagrams dropped and counted", detail: () => unbound() });
      resolve();
      c.send({ type: "data", stream: 1, data: enc("late") });
      await waitFor(() => peer.got.some((g) => dec(g.data) === "late"), { what: "the datagram sent once bound", detail: () => peer.got.length });
      expect(peer.got.map((g) => g.data.length)).toEqual([16_000, 16_000, 16_000, 16_000, 4]);
      expect(peer.got.slice(0, 4).map((g) => g.data[0])).toEqual([0, 1, 2, 3]);
    } finally {
      c.close();
      peer.stop();
      await server.stop();
    }
  });

  test("UDP stream without the UDP extension negotiated is refused with 0x41", async () => {
    const c = await RawWisp.open(wispUrl, { v2: true, info: [] });
    c.send({ type: "connect", stream: 3, streamType: 2, port: uecho.port, host: "127.0.0.1" });
    expect(await c.closeOf(3)).toBe(WISP_CLOSE.invalidInfo);
    c.close();
  });

  test("a v2 client that skips INFO and opens a stream falls back to v1", async () => {
    const c = await RawWisp.open(wispUrl, { v2: true, info: null });
    c.send({ type: "connect", stream: 1, streamType: 1, port: echo.port, host: "127.0.0.1" });
    c.send({ type: "data", stream: 1, data: enc("early") });
    expect(await c.next((p) => p.type === "continue" && p.stream === 0)).toEqual({ type: "continue", stream: 0, remaining: 128 });
    await c.waitBytes(1, 5);
    c.close();
  });

  test("password auth from the policy's [wisp] users: right, wrong, missing, and no way around it", async () => {
    const policy = parsePolicy('[network]\ndeny = []\nallow = ["*"]\n[wisp]\nusers = { alice = "s3cret" }\nmotd = "members only"', "wisp-auth.toml");
    const server = await startServer({ policy });
    const url = `ws://127.0.0.1:${server.port}/wisp/`;
    try {
      const { WISP_EXT: E, encodeWispPasswordClient } = await import("../src/protocol/wisp.ts");
      // The server announces that a password is required.
      const probe = await RawWisp.open(url, { v2: true, info: null });
      expect(probe.serverInfo?.extensions.find((e) => e.id === E.passwordAuth)?.payload).toEqual(new Uint8Array([1]));
      probe.close();
      // Right credentials: CONTINUE(0), and streams work.
      const ok = await RawWisp.open(url, { v2: true, info: [{ id: E.passwordAuth, payload: encodeWispPasswordClient("alice", "s3cret") }] });
      ok.send({ type: "connect", stream: 1, streamType: 1, port: echo.port, host: "127.0.0.1" });
      ok.send({ type: "data", stream: 1, data: enc("authed") });
      await ok.waitBytes(1, 6);
      ok.close();
      // Wrong password: CLOSE(0, 0xc0) and the WebSocket is closed.
      const bad = await RawWisp.open(url, { v2: true, info: null });
      bad.send({ type: "info", stream: 0, major: 2, minor: 0, extensions: [{ id: E.passwordAuth, payload: encodeWispPasswordClient("alice", "nope") }] });
      expect(await bad.closeOf(0)).toBe(WISP_CLOSE.authBadPassword);
      // Missing credentials: 0xc2.
      const none = await RawWisp.open(url, { v2: true, info: null });
      none.send({ type: "info", stream: 0, major: 2, minor: 0, extensions: [] });
      expect(await none.closeOf(0)).toBe(WISP_CLOSE.authMissingCredentials);
      // No way around it: skipping INFO, or speaking v1, is refused before anything is opened.
      const accepted = echo.accepted;
      const skip = await RawWisp.open(url, { v2: true, info: null });
      skip.send({ type: "connect", stream: 1, streamType: 1, port: echo.port, host: "127.0.0.1" });
      expect(await skip.closeOf(0)).toBe(WISP_CLOSE.authMissingCredentials);
      const v1 = new WebSocket(url);
      v1.binaryType = "arraybuffer";
      const firstV1 = await new Promise<Uint8Array>((r) => (v1.onmessage = (m) => r(new Uint8Array(m.data as ArrayBuffer))));
      expect([...firstV1]).toEqual([4, 0, 0, 0, 0, WISP_CLOSE.authMissingCredentials]);
      await Bun.sleep(50); // nothing may be opened: give a stray connection 50 ms to (wrongly) reach the target
      expect(echo.accepted).toBe(accepted);
      // wisp-js's own password extension is understood.
      const { client } = await import("@mercuryworkshop/wisp-js/client" as string);
      const js = new client.ClientConnection(url, {
        wisp_version: 2,
        wisp_extensions: [new wjsExt.PasswordAuthExtension({ client_config: { username: "alice", password: "s3cret" } })],
      });
      await new Promise<void>((r, j) => ((js.onopen = r), (js.onerror = j)));
      expect(js.wisp_version).toBe(2);
      js.close();
    } finally {
      await server.stop();
    }
  });
});

describe("malformed packets close only their stream; the WebSocket stays usable", () => {
  async function stillWorks(c: RawWisp, id: number): Promise<void> {
    c.send({ type: "connect", stream: id, streamType: 1, port: echo.port, host: "127.0.0.1" });
    c.send({ type: "data", stream: id, data: enc("still here") });
    await c.waitBytes(id, 10);
  }

  test("short packets, text frames, CONNECT/DATA on stream 0, client CONTINUE and INFO are ignored", async () => {
    const c = await RawWisp.open(wispUrl);
    c.sendRaw(new Uint8Array([2, 1]));
    c.sendRaw(new Uint8Array(0));
    c.sendRaw("a text frame");
    c.send({ type: "connect", stream: 0, streamType: 1, port: echo.port, host: "127.0.0.1" });
    c.send({ type: "data", stream: 0, data: enc("zero") });
    c.send({ type: "continue", stream: 0, remaining: 5 });
    c.send({ type: "info", stream: 0, major: 2, minor: 0, extensions: [] });
    c.send({ type: "close", stream: 0, reason: 1 });
    await stillWorks(c, 1);
    expect(c.packets.filter((p) => p.type === "close")).toEqual([]);
    expect(c.closed).toBeNull();
    c.close();
  });

  test("bad CONNECTs: unknown stream type, port 0, empty host, short payload, invalid UTF-8 → 0x41", async () => {
    const c = await RawWisp.open(wispUrl);
    c.send({ type: "connect", stream: 11, streamType: 3, port: echo.port, host: "127.0.0.1" });
    c.send({ type: "connect", stream: 12, streamType: 1, port: 0, host: "127.0.0.1" });
    c.send({ type: "connect", stream: 13, streamType: 1, port: 80, host: "  " });
    c.sendRaw(new Uint8Array([1, 14, 0, 0, 0, 1]));
    c.sendRaw(new Uint8Array([1, 15, 0, 0, 0, 1, 80, 0, 0xff]));
    for (const id of [11, 12, 13, 14, 15]) expect(await c.closeOf(id)).toBe(WISP_CLOSE.invalidInfo);
    await stillWorks(c, 1);
    c.close();
  });

  test("unknown packet type on an open stream closes that stream only", async () => {
    const c = await RawWisp.open(wispUrl);
    await stillWorks(c, 1);
    c.send({ type: "connect", stream: 2, streamType: 1, port: echo.port, host: "127.0.0.1" });
    c.sendRaw(new Uint8Array([0x42, 2, 0, 0, 0, 1, 2, 3]));
    expect(await c.closeOf(2)).toBe(WISP_CLOSE.invalidInfo);
    c.send({ type: "data", stream: 1, data: enc("again") });
    await c.waitBytes(1, 15);
    c.close();
  });

  test("DATA for a stream that never existed → 0x41; for one just closed by the client → dropped", async () => {
    const c = await RawWisp.open(wispUrl);
    c.send({ type: "data", stream: 99, data: enc("who?") });
    expect(await c.closeOf(99)).toBe(WISP_CLOSE.invalidInfo);
    await stillWorks(c, 1);
    c.send({ type: "close", stream: 1, reason: WISP_CLOSE.voluntary });
    c.send({ type: "data", stream: 1, data: enc("late") });
    await stillWorks(c, 2);
    await Bun.sleep(50); // give a stray CLOSE 50 ms to (wrongly) show up
    expect(c.packets.filter((p) => p.type === "close")).toEqual([]); // no echo of the client's own CLOSE
    c.close();
  });

  test("CONNECT reusing an open stream id → 0x41, and the old stream is ended too", async () => {
    const c = await RawWisp.open(wispUrl);
    await stillWorks(c, 1);
    const accepted = echo.accepted;
    c.send({ type: "connect", stream: 1, streamType: 1, port: echo.port, host: "127.0.0.1" });
    expect(await c.closeOf(1)).toBe(WISP_CLOSE.invalidInfo);
    await Bun.sleep(50); // the refused CONNECT must open nothing: give a stray connection 50 ms to (wrongly) arrive
    expect(echo.accepted).toBe(accepted);
    // The id is free again.
    c.send({ type: "connect", stream: 1, streamType: 1, port: echo.port, host: "127.0.0.1" });
    c.send({ type: "data", stream: 1, data: enc("fresh") });
    await c.waitBytes(1, 15);
    c.close();
  });

  test("a DATA packet over max_message_bytes closes that stream with 0x49", async () => {
    const small = await startServer({ policy: parsePolicy(`[network]\ndeny = []\n[limits]\nmax_message_bytes = 4096\n`, "wisp-test.toml") });
    const c = await RawWisp.open(`ws://127.0.0.1:${small.port}/wisp/`);
    await stillWorks(c, 1);
    c.send({ type: "data", stream: 1, data: new Uint8Array(8192) });
    expect(await c.closeOf(1)).toBe(WISP_CLOSE.throttled);
    await stillWorks(c, 2);
    c.close();
    await small.stop();
  });

  test("malformed packets are counted in the metrics", async () => {
    const before = await (await fetch(`http://127.0.0.1:${open.port}/metrics`)).text();
    const count = (t: string) => Number(/wasmnet_errors_total\{code="EBADREQ"\} (\d+)/.exec(t)?.[1] ?? 0);
    const c = await RawWisp.open(wispUrl);
    c.sendRaw(new Uint8Array([9, 9]));
    await stillWorks(c, 1);
    const after = await (await fetch(`http://127.0.0.1:${open.port}/metrics`)).text();
    expect(count(after)).toBeGreaterThan(count(before));
    c.close();
  });
});

describe("Wisp flow control", () => {
  /** A TCP target that reads nothing until told to (even if told before the relay connects), then hashes everything. */
  function stalledSink() {
    let sock: Socket<undefined> | null = null;
    let resumed = false;
    let received = 0;
    const hasher = new Bun.CryptoHasher("sha256");
    const listener = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(s) {
          sock = s;
          if (!resumed) s.pause();
        },
        data(_s, d) {
          received += d.length;
          hasher.update(d);
        },
        error() {},
      },
    });
    return {
      port: listener.port,
      resume: () => {
        resumed = true;
        sock?.resume();
      },
      get connected() {
        return sock !== null;
      },
      get received() {
        return received;
      },
      digest: () => hasher.digest("hex"),
      stop: () => listener.stop(true),
    };
  }

  test("a client that respects CONTINUE is held back by a stalled target and loses nothing", async () => {
    const sink = stalledSink();
    const c = await RawWisp.open(wispUrl);
    c.keepData = false;
    let credit = 128;
    let maxContinue = 0;
    let lastContinueAt = performance.now();
    let connectedAt = Infinity;
    const id = 7;
    c.ws.addEventListener("message", (m) => {
      const b = new Uint8Array(m.data as ArrayBuffer);
      if (b[0] === 3 && b[1] === id) {
        credit = new DataView(b.buffer).getUint32(5, true);
        maxContinue = Math.max(maxContinue, credit);
        lastContinueAt = performance.now();
      }
    });
    c.send({ type: "connect", stream: id, streamType: 1, port: sink.port, host: "127.0.0.1" });
    const total = 48 * 1024 * 1024;
    const chunk = 64 * 1024;
    const payload = makePayload(total, 9);
    let sent = 0;
    /** Sends as many packets as the credit allows (and the WebSocket's own buffer takes). */
    const pump = () => {
      if (sink.connected && connectedAt === Infinity) connectedAt = performance.now();
      while (credit > 0 && sent < total && c.ws.bufferedAmount <= 4 * 1024 * 1024) {
        c.send({ type: "data", stream: id, data: payload.subarray(sent, sent + chunk) });
        sent += chunk;
        credit--;
      }
    };
    const detail = () => ({ sent, credit, connected: sink.connected, received: sink.received });
    // Stalled: the relay has reached the target, and we are out of credit with no CONTINUE for
    // 500 ms (the window in which one would come).
    const stalled = () => sink.connected && credit <= 0 && performance.now() - Math.max(lastContinueAt, connectedAt) > 500;
    await waitFor(() => { pump(); return sent >= total || stalled(); }, {
      what: "the upload to stall on a target that reads nothing",
      timeoutMs: 30_000,
      detail,
    });
    // The server stopped granting credit long before 48 MiB (kernel buffers take some).
    expect(sent).toBeLessThan(total);
    const stalledAt = sent;
    expect(credit).toBe(0);
    sink.resume();
    await waitFor(() => { pump(); return sent >= total; }, { what: "the rest of the upload to be sent", timeoutMs: 30_000, detail });
    expect(sent).toBe(total);
    await waitFor(() => sink.received >= total, { what: "the target to receive everything", timeoutMs: 30_000, detail });
    expect(sink.received).toBe(total);
    expect(sink.digest()).toBe(sha256(payload));
    expect(maxContinue).toBeLessThanOrEqual(128);
    expect(c.packets.filter((p) => p.type === "close")).toEqual([]);
    expect(stalledAt).toBeGreaterThan(0);
    c.close();
    sink.stop();
  });

  test("a client that ignores CONTINUE is slowed down, not cut off, and loses nothing", async () => {
    const sink = stalledSink();
    const c = await RawWisp.open(wispUrl);
    c.send({ type: "connect", stream: 1, streamType: 1, port: sink.port, host: "127.0.0.1" });
    const total = 24 * 1024 * 1024;
    const payload = makePayload(total, 3);
    for (let o = 0; o < total; o += 256 * 1024) c.send({ type: "data", stream: 1, data: payload.subarray(o, o + 256 * 1024) });
    await Bun.sleep(300); // the target stays stalled for 300 ms under the flood: the stream must not be cut off meanwhile
    sink.resume();
    await waitFor(() => sink.received >= total, { what: "the target to receive everything", timeoutMs: 30_000, detail: () => sink.received });
    expect(sink.received).toBe(total);
    expect(sink.digest()).toBe(sha256(payload));
    expect(c.packets.filter((p) => p.type === "close")).toEqual([]);
    c.close();
    sink.stop();
  });
});

describe("routing", () => {
  test("/wisp (no trailing slash) is Wisp too; wasmnet protocol stays on /", async () => {
    const c = await RawWisp.open(`ws://127.0.0.1:${open.port}/wisp`);
    c.close();
    const ws = new WebSocket(`ws://127.0.0.1:${open.port}/`);
    ws.binaryType = "arraybuffer";
    await new Promise((r) => (ws.onopen = r));
    ws.send(JSON.stringify({ op: "connect", id: 1, addr: "127.0.0.1", port: echo.port }));
    const ev = await new Promise<string>((r) => (ws.onmessage = (m) => r(m.data as string)));
    expect(JSON.parse(ev)).toEqual({ ev: "connected", id: 1 });
    ws.close();
  });

  test("a custom wispPrefix moves the endpoint", async () => {
    const s = await startServer({ noPolicy: true, wispPrefix: "/tunnel/" });
    const c = await wispJsConnect(`ws://127.0.0.1:${s.port}/tunnel/`, 2);
    const st = c.create_stream("127.0.0.1", echo.port);
    const t = track(st);
    st.send(enc("moved"));
    await t.waitBytes(5);
    c.close();
    await s.stop();
  });
});
