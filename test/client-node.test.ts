// The browser client's class run directly in Bun (global WebSocket): fast coverage of its
// negotiation, credit queueing, replay and teardown logic. Two kinds of peer, both real WebSockets
// on 127.0.0.1: a scripted peer (a tiny Bun.serve that answers exactly what a test tells it to, to
// pin down protocol details) and the real wasmnet server with real targets.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { ServerWebSocket } from "bun";
import { WasmnetClient, WasmnetError } from "../client/src/index.ts";
import {
  decodeBinaryEvent,
  decodeBinaryRequest,
  decodeJsonEvent,
  decodeJsonRequest,
  encodeBinaryEvent,
  encodeJsonEvent,
  type Event,
  type Request,
} from "../src/protocol/index.ts";
import { createServer, type WasmnetServer } from "../src/index.ts";
import { silentLogger } from "../src/log.ts";
import { duplexServer, makePki, sha256hex, testBytes, tlsEchoServer, type TestPki } from "./helpers/client-targets.ts";
import { needing } from "./helpers/components.ts";
import { echoServer, freePort } from "./helpers/targets.ts";
import { waitFor } from "./helpers/wait.ts";

// ---- unhandled rejections anywhere in this file fail it ----
const unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => unhandled.push(e);
process.on("unhandledRejection", onUnhandled);
afterAll(() => {
  process.off("unhandledRejection", onUnhandled);
  expect(unhandled).toEqual([]);
});

/**
 * What a client's WebSocket has received: frames, and data bytes per id. The listener is added
 * after the client's own handler, in the same dispatch: once a count is reached, the client has
 * handled those frames too (which is how a test knows data waits undelivered, to be replayed).
 */
function wireOf(c: WasmnetClient): { frames: number; dataBytes(id: number): number } {
  const bytes = new Map<number, number>();
  const wire = { frames: 0, dataBytes: (id: number) => bytes.get(id) ?? 0 };
  c.webSocket.addEventListener("message", (m: MessageEvent) => {
    wire.frames++;
    const e = typeof m.data === "string" ? decodeJsonEvent(m.data) : decodeBinaryEvent(new Uint8Array(m.data as ArrayBuffer));
    if (e.ev === "data") bytes.set(e.id, (bytes.get(e.id) ?? 0) + e.data.length);
  });
  return wire;
}

const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return "resolved";
  } catch (e) {
    expect(e).toBeInstanceOf(WasmnetError);
    expect(e).toBeInstanceOf(Error);
    return (e as WasmnetError).code;
  }
};

// ---- scripted peer ----

interface Peer {
  ws: ServerWebSocket<unknown>;
  /** Raw frames as received (text or bytes). */
  raw: (string | Uint8Array)[];
  reqs: Request[];
  binary: boolean;
  emit(e: Event): void;
  /** Bytes received through `send` on an id, in order. */
  sent(id: number): number[];
}

function scriptedPeer(onReq: (p: Peer, r: Request) => void) {
  const peers: Peer[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req, srv) {
      return srv.upgrade(req) ? undefined : new Response("upgrade", { status: 426 });
    },
    websocket: {
      open(ws) {
        const p: Peer = {
          ws,
          raw: [],
          reqs: [],
          binary: false,
          emit(e) {
            ws.send(p.binary ? encodeBinaryEvent(e) : encodeJsonEvent(e));
          },
          sent(id) {
            return p.reqs.flatMap((r) => (r.op === "send" && r.id === id ? [...r.data] : []));
          },
        };
        (ws as unknown as { peer: Peer }).peer = p;
        peers.push(p);
      },
      message(ws, m) {
        const p = (ws as unknown as { peer: Peer }).peer;
        const bin = typeof m !== "string";
        p.binary = bin;
        const bytes = bin ? new Uint8Array(m as Uint8Array) : null;
        p.raw.push(bin ? bytes! : (m as string));
        const d = bin ? decodeBinaryRequest(bytes!) : decodeJsonRequest(m as string);
        if (!d.ok) throw new Error(`scripted peer got a malformed request: ${d.msg}`);
        p.reqs.push(d.req);
        onReq(p, d.req);
      },
    },
  });
  return { url: `ws://127.0.0.1:${server.port}/`, peers, stop: () => server.stop(true) };
}

const HELLO_LIMITS = { max_connections: 50, max_message_bytes: 1 << 20, stream_buffer_bytes: 1 << 20, max_bandwidth_mbps: 0 };

/** A version-2 peer with a given window that connects everything and answers nothing else. */
function v2Peer(window: number, extra?: (p: Peer, r: Request) => void) {
  return scriptedPeer((p, r) => {
    if (r.op === "hello") p.emit({ ev: "hello", id: 0, version: 2, features: ["flow", "half_close"], window, limits: HELLO_LIMITS });
    else if (r.op === "connect") p.emit({ ev: "connected", id: r.id });
    extra?.(p, r);
  });
}

describe("negotiation", () => {
  for (const binary of [false, true]) {
    test(`sends hello first (${binary ? "binary 0x0A, id 0" : "JSON"}) and takes version 2 from the answer`, async () => {
      const peer = v2Peer(4096);
      try {
        const c = new WasmnetClient(peer.url, { binary });
        await c.ready();
        const id = await c.connect("example.test", 80);
        const p = peer.peers[0]!;
        if (binary) {
          const f = p.raw[0] as Uint8Array;
          expect(f[0]).toBe(0x0a);
          expect([...f.subarray(1, 9)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
          expect(JSON.parse(new TextDecoder().decode(f.subarray(9)))).toEqual({ version: 2, features: ["flow", "half_close"] });
        } else {
          expect(JSON.parse(p.raw[0] as string)).toEqual({ op: "hello", version: 2, features: ["flow", "half_close"] });
        }
        expect(p.reqs[1]).toEqual({ op: "connect", id: 1, addr: "example.test", port: 80 });
        expect(id).toBe(1);
        expect(c.version).toBe(2);
        expect([...c.features]).toEqual(["flow", "half_close"]);
        expect(c.window).toBe(4096);
        c.disconnect();
      } finally {
        peer.stop();
      }
    });
  }

  test("a version-1 server's error on id 0 means version 1: no window, no queue", async () => {
    const peer = scriptedPeer((p, r) => {
      if (r.op === "hello") p.emit({ ev: "error", id: 0, code: "EBADREQ", msg: 'unknown op "hello"' });
      else if (r.op === "connect") p.emit({ ev: "connected", id: r.id });
    });
    try {
      const c = new WasmnetClient(peer.url);
      await c.ready();
      expect(c.version).toBe(1);
      expect(c.features).toEqual([]);
      expect(c.window).toBe(Infinity);
      const id = await c.connect("127.0.0.1", 7);
      c.send(id, new Uint8Array(300_000));
      expect(c.bufferedAmount(id)).toBe(0);
      await waitFor(() => peer.peers[0]!.sent(id).length === 300_000, "all bytes");
      expect(() => c.shutdown(id)).toThrow(expect.objectContaining({ code: "ENOTSUP" }) as never);
      c.disconnect();
    } finally {
      peer.stop();
    }
  });

  test("no answer to hello within helloTimeoutMs means version 1", async () => {
    const peer = scriptedPeer((p, r) => {
      if (r.op === "connect") p.emit({ ev: "connected", id: r.id });
    });
    try {
      const t0 = performance.now();
      const c = new WasmnetClient(peer.url, { helloTimeoutMs: 150 });
      await c.ready();
      expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
      expect(c.version).toBe(1);
      expect(await c.connect("127.0.0.1", 7)).toBe(1);
      expect(peer.peers[0]!.reqs.map((r) => r.op)).toEqual(["hello", "connect"]);
      c.disconnect();
    } finally {
      peer.stop();
    }
  });

  test("version: 1 sends no hello at all", async () => {
    const peer = scriptedPeer((p, r) => {
      if (r.op === "connect") p.emit({ ev: "connected", id: r.id });
    });
    try {
      const c = new WasmnetClient(peer.url, { version: 1 });
      await c.ready();
      await c.connect("127.0.0.1", 7);
      expect(peer.peers[0]!.reqs.map((r) => r.op)).toEqual(["connect"]);
      c.disconnect();
    } finally {
      peer.stop();
    }
  });

  test("ready() rejects with ECLOSED when nothing listens", async () => {
    const c = new WasmnetClient(`ws://127.0.0.1:${freePort()}/`);
    expect(await codeOf(c.ready())).toBe("ECLOSED");
    expect(await codeOf(c.connect("127.0.0.1", 1))).toBe("ECLOSED");
  });
});

describe("flow control", () => {
  test("send spends the window, queues the rest, and credit releases it in order", async () => {
    const peer = v2Peer(10);
    try {
      const c = new WasmnetClient(peer.url, { binary: true });
      await c.ready();
      const id = await c.connect("t", 1);
      const p = peer.peers[0]!;
      const data = Uint8Array.from({ length: 25 }, (_, i) => i);
      c.send(id, data);
      data.fill(0xff); // the caller reuses its buffer: what was queued must not change
      await waitFor(() => p.sent(id).length === 10, "first 10 bytes");
      await Bun.sleep(30); // nothing more may be sent without credit: give it 30 ms to (wrongly) show up
      expect(p.sent(id).length).toBe(10);
      expect(c.bufferedAmount(id)).toBe(15);

      let settled = false;
      const more = c.sendAsync(id, Uint8Array.from([100, 101, 102, 103, 104])).then(() => (settled = true));
      await Bun.sleep(20); // it must not settle without credit: give it 20 ms to (wrongly) do so
      expect(settled).toBe(false);
      expect(c.bufferedAmount(id)).toBe(20);

      p.emit({ ev: "credit", id, bytes: 4 });
      await waitFor(() => p.sent(id).length === 14, "4 more bytes");
      expect(settled).toBe(false);
      p.emit({ ev: "credit", id, bytes: 100 });
      await more;
      await waitFor(() => p.sent(id).length === 30, "all 30 bytes");
      expect(p.sent(id)).toEqual([...Array.from({ length: 25 }, (_, i) => i), 100, 101, 102, 103, 104]);
      expect(c.bufferedAmount(id)).toBe(0);
      // Sends were split at the credit boundaries: 10, 4, then the remaining 11 + 5.
      expect(p.reqs.filter((r) => r.op === "send").map((r) => (r as { data: Uint8Array }).data.length)).toEqual([10, 4, 11, 5]);
      c.disconnect();
    } finally {
      peer.stop();
    }
  });

  test("messages are split at chunkBytes", async () => {
    const peer = v2Peer(1000);
    try {
      const c = new WasmnetClient(peer.url, { chunkBytes: 8 });
      await c.ready();
      const id = await c.connect("t", 1);
      await c.sendAsync(id, new Uint8Array(20));
      const p = peer.peers[0]!;
      await waitFor(() => p.sent(id).length === 20, "20 bytes");
      expect(p.reqs.filter((r) => r.op === "send").map((r) => (r as { data: Uint8Array }).data.length)).toEqual([8, 8, 4]);
      c.disconnect();
    } finally {
      peer.stop();
    }
  });

  test("shutdown and close wait behind queued bytes", async () => {
    const peer = v2Peer(4);
    try {
      const c = new WasmnetClient(peer.url);
      await c.ready();
      const a = await c.connect("t", 1);
      const b = await c.connect("t", 2);
      const p = peer.peers[0]!;
      c.send(a, "0123456789");
      c.shutdown(a);
      c.send(b, "abcdefgh");
      c.close(b);
      expect(() => c.send(a, "x")).toThrow(expect.objectContaining({ code: "ECLOSED" }) as never);
      const ops = () => p.reqs.filter((r) => r.op !== "hello" && r.op !== "connect").map((r) => `${r.op}:${r.id}`);
      await waitFor(() => ops().length >= 2, "the first sends on a and b");
      await Bun.sleep(30); // no shutdown or close may overtake the queued bytes: give one 30 ms to (wrongly) show up
      expect(ops()).toEqual([`send:${a}`, `send:${b}`]);
      p.emit({ ev: "credit", id: a, bytes: 4 });
      p.emit({ ev: "credit", id: b, bytes: 4 });
      await waitFor(() => ops().includes(`close:${b}`), "b closed");
      p.emit({ ev: "credit", id: a, bytes: 6 });
      await waitFor(() => ops().includes(`shutdown:${a}`), "a shut down");
      expect(ops()).toEqual([`send:${a}`, `send:${b}`, `send:${a}`, `send:${b}`, `close:${b}`, `send:${a}`, `shutdown:${a}`]);
      expect(new TextDecoder().decode(new Uint8Array(p.sent(a)))).toBe("0123456789");
      c.disconnect();
    } finally {
      peer.stop();
    }
  });
});

describe("events and replay", () => {
  test("data, datagrams, accepts, end and close that arrive before their callbacks are replayed", async () => {
    const peer = scriptedPeer((p, r) => {
      if (r.op === "hello") p.emit({ ev: "hello", id: 0, version: 2, features: ["flow", "half_close"], window: 100, limits: HELLO_LIMITS });
      if (r.op === "connect") {
        p.emit({ ev: "connected", id: r.id });
        p.emit({ ev: "data", id: r.id, data: new TextEncoder().encode("one ") });
        p.emit({ ev: "data", id: r.id, data: new TextEncoder().encode("two") });
        p.emit({ ev: "end", id: r.id });
        p.emit({ ev: "closed", id: r.id });
      }
      if (r.op === "connect_udp") {
        p.emit({ ev: "udp_bound", id: r.id, port: 40000 });
        p.emit({ ev: "data_from", id: r.id, data: new Uint8Array([1, 2]), addr: "127.0.0.1", port: 53 });
      }
      if (r.op === "bind") {
        p.emit({ ev: "listening", id: r.id, port: 41000 });
        p.emit({ ev: "accepted", id: r.id, connId: 1_000_001, remote: "127.0.0.1:5555" });
        p.emit({ ev: "data", id: 1_000_001, data: new TextEncoder().encode("inbound") });
      }
    });
    try {
      const c = new WasmnetClient(peer.url);
      const wire = wireOf(c);
      await c.ready();
      const id = await c.connect("t", 1);
      const udp = await c.connectUdp("127.0.0.1", 53);
      const lis = await c.bind("127.0.0.1", 0);
      expect(udp).toEqual({ id: 2, port: 40000 });
      expect(lis).toEqual({ id: 3, port: 41000 });
      // Every frame the peer sends (hello, 5 for the stream, 2 for UDP, 3 for the listener) has
      // been handled before any callback is set.
      await waitFor(() => wire.frames === 11, { what: "the peer's 11 frames", detail: () => wire.frames });

      const log: string[] = [];
      c.onData(id, (d) => log.push(`data:${new TextDecoder().decode(d)}`));
      c.onEnd(id, () => log.push("end"));
      c.onClose(id, (e) => log.push(`close:${e?.code ?? "ok"}`));
      c.onDataFrom(udp.id, (d, a, port) => log.push(`from:${[...d]}@${a}:${port}`));
      c.onAccept(lis.id, (conn, remote) => {
        log.push(`accept:${conn}@${remote}`);
        c.onData(conn, (d) => log.push(`conn:${new TextDecoder().decode(d)}`));
      });
      expect(log).toEqual([
        "data:one ",
        "data:two",
        "end",
        "close:ok",
        "from:1,2@127.0.0.1:53",
        "accept:1000001@127.0.0.1:5555",
        "conn:inbound",
      ]);
      // The server's ids are skipped when the client picks its next one.
      expect(await c.connect("t", 1)).toBe(4);
      c.disconnect();
    } finally {
      peer.stop();
    }
  });

  test("error, denied and a stream-ending error reach the right promise or callback", async () => {
    const peer = v2Peer(100, (p, r) => {
      if (r.op === "connect_tls") p.emit({ ev: "error", id: r.id, code: "ETLS", msg: "certificate has expired" });
      if (r.op === "resolve") p.emit({ ev: "denied", id: r.id, msg: "deny nonpublic" });
      if (r.op === "send") p.emit({ ev: "error", id: r.id, code: "ELIMIT", msg: "window overrun" });
    });
    try {
      const c = new WasmnetClient(peer.url);
      await c.ready();
      const tls = c.connectTls("expired.test", 443);
      expect(await codeOf(tls)).toBe("ETLS");
      await tls.catch((e: WasmnetError) => {
        expect(e.message).toBe("certificate has expired");
        expect(e.id).toBe(1);
      });
      expect(await codeOf(c.resolve("internal.test"))).toBe("EPOLICY");
      const id = await c.connect("t", 1);
      const seen: string[] = [];
      c.onError(id, (e) => seen.push(`error:${e.code}`));
      c.onClose(id, (e) => seen.push(`close:${e?.code}`));
      c.send(id, "x");
      await waitFor(() => seen.length === 2, "close");
      expect(seen).toEqual(["error:ELIMIT", "close:ELIMIT"]);
      expect(() => c.send(id, "y")).toThrow(expect.objectContaining({ code: "ECLOSED" }) as never);
      expect(() => c.send(999, "y")).toThrow(expect.objectContaining({ code: "EBADID" }) as never);
      c.disconnect();
    } finally {
      peer.stop();
    }
  });

  for (const how of ["disconnect()", "the server closing the WebSocket"]) {
    test(`${how}: every pending promise rejects with ECLOSED and every socket's onClose fires`, async () => {
      const peer = v2Peer(4); // answers connect, never resolve or connect_tls
      try {
        const c = new WasmnetClient(peer.url);
        await c.ready();
        const a = await c.connect("t", 1);
        const b = await c.connect("t", 2);
        const closes: string[] = [];
        c.onClose(a, (e) => closes.push(`a:${e?.code}`));
        c.onClose(b, (e) => closes.push(`b:${e?.code}`));
        const pendingResolve = c.resolve("slow.test");
        const pendingTls = c.connectTls("slow.test", 443);
        const stuck = c.sendAsync(a, "more than four bytes");
        const { readable } = c.stream(b);
        const read = readable.getReader().read();
        const asked = () => peer.peers[0]!.reqs.map((r) => r.op);
        await waitFor(() => (["resolve", "connect_tls", "send"] as const).every((op) => asked().includes(op)), { what: "resolve, connect_tls and send at the peer", detail: asked });
        if (how === "disconnect()") c.disconnect();
        else peer.peers[0]!.ws.close(1001, "going away");
        expect(await codeOf(pendingResolve)).toBe("ECLOSED");
        expect(await codeOf(pendingTls)).toBe("ECLOSED");
        expect(await codeOf(stuck)).toBe("ECLOSED");
        expect(await codeOf(read)).toBe("ECLOSED");
        expect(closes.sort()).toEqual(["a:ECLOSED", "b:ECLOSED"]);
        expect(await codeOf(c.connect("t", 3))).toBe("ECLOSED");
        expect(() => c.send(a, "x")).toThrow(expect.objectContaining({ code: "ECLOSED" }) as never);
        c.disconnect(); // twice is harmless
      } finally {
        peer.stop();
      }
    });
  }
});

describe("zero-round-trip opens (openAndSend)", () => {
  /** A version-2 peer with `window` that answers hello only: the test decides when (and whether) a stream connects. */
  const silentPeer = (window: number) =>
    scriptedPeer((p, r) => {
      if (r.op === "hello") p.emit({ ev: "hello", id: 0, version: 2, features: ["flow", "half_close"], window, limits: HELLO_LIMITS });
    });

  for (const binary of [false, true]) {
    test(`${binary ? "binary" : "json"}: connect and the first window of data go out before connected; the rest waits for credit`, async () => {
      const peer = silentPeer(4);
      try {
        const c = new WasmnetClient(peer.url, { binary });
        await c.ready();
        const id = c.openAndSend("example.test", 80, "0123456789");
        // Synchronously: the window's 4 bytes were handed to the WebSocket, 6 wait in the client.
        expect(c.bufferedAmount(id)).toBe(6);
        const p = peer.peers[0]!;
        await waitFor(() => p.sent(id).length === 4, "the first 4 bytes at the peer");
        expect(p.reqs.map((r) => r.op)).toEqual(["hello", "connect", "send"]);
        expect(p.reqs[1]).toEqual({ op: "connect", id, addr: "example.test", port: 80 });
        const tls = c.openAndSend("example.test", 443, undefined, { tls: true });
        await waitFor(() => p.reqs.length === 4, "the connect_tls");
        expect(p.reqs[3]).toEqual({ op: "connect_tls", id: tls, addr: "example.test", port: 443 });
        const got: string[] = [];
        c.onData(id, (d) => got.push(new TextDecoder().decode(d)));
        p.emit({ ev: "connected", id });
        p.emit({ ev: "data", id, data: new TextEncoder().encode("hi") });
        p.emit({ ev: "credit", id, bytes: 4 });
        await waitFor(() => p.sent(id).length === 8, "4 more bytes after credit");
        p.emit({ ev: "credit", id, bytes: 4 });
        await waitFor(() => p.sent(id).length === 10, "the last 2 bytes");
        expect(new TextDecoder().decode(new Uint8Array(p.sent(id)))).toBe("0123456789");
        expect(got).toEqual(["hi"]);
        c.disconnect();
      } finally {
        peer.stop();
      }
    });
  }

  test("a refused open ends its stream: onError and onClose get EPOLICY, queued writes reject, late EBADIDs are ignored", async () => {
    const peer = silentPeer(4);
    try {
      const c = new WasmnetClient(peer.url);
      await c.ready();
      const warnings: unknown[] = [];
      const warn = console.warn;
      console.warn = (...a: unknown[]) => void warnings.push(a);
      try {
        const id = c.openAndSend("blocked.test", 80, "0123456789");
        const errors: string[] = [];
        c.onError(id, (e) => errors.push(e.code));
        const closed = new Promise<WasmnetError | undefined>((r) => c.onClose(id, r));
        const queued = c.sendAsync(id, "more");
        const p = peer.peers[0]!;
        await waitFor(() => p.sent(id).length === 4, "the first 4 bytes");
        p.emit({ ev: "denied", id, msg: 'deny "*": blocked.test' });
        // The server answers the send that crossed the refusal with EBADID: nothing more to report.
        p.emit({ ev: "error", id, code: "EBADID", msg: `send: unknown id ${id}` });
        const err = await closed;
        expect(err).toBeInstanceOf(WasmnetError);
        expect([err!.code, err!.message, err!.id]).toEqual(["EPOLICY", 'deny "*": blocked.test', id]);
        expect(await codeOf(queued)).toBe("EPOLICY");
        expect(() => c.send(id, "x")).toThrow(expect.objectContaining({ code: "ECLOSED" }) as never);
        // A round trip through the peer, so the EBADID has surely been handled.
        const after = c.openAndSend("t", 1);
        await waitFor(() => p.reqs.some((r) => r.op === "connect" && r.id === after), "a later connect");
        p.emit({ ev: "error", id: after, code: "ECONNREFUSED", msg: "connect t:1 refused" });
        const e2 = await new Promise<WasmnetError | undefined>((r) => c.onClose(after, r));
        expect(e2?.code).toBe("ECONNREFUSED");
        expect(errors).toEqual(["EPOLICY"]);
        expect(warnings).toEqual([]);
      } finally {
        console.warn = warn;
      }
      c.disconnect();
    } finally {
      peer.stop();
    }
  });

  test("called before ready(): the open waits for the hello answer, then spends the window it grants", async () => {
    const peer = silentPeer(4);
    try {
      const c = new WasmnetClient(peer.url, { binary: true });
      const id = c.openAndSend("example.test", 80, "0123456789");
      expect(c.bufferedAmount(id)).toBe(10); // nothing may go out before the window is known
      await c.ready();
      expect(c.bufferedAmount(id)).toBe(6);
      const p = peer.peers[0]!;
      await waitFor(() => p.sent(id).length === 4, "the first 4 bytes");
      expect(p.reqs.map((r) => r.op)).toEqual(["hello", "connect", "send"]);
      c.disconnect();
    } finally {
      peer.stop();
    }
  });

  test("called before the WebSocket opens on version 1: everything goes out once it opens", async () => {
    const peer = scriptedPeer(() => {});
    try {
      const c = new WasmnetClient(peer.url, { version: 1 });
      const id = c.openAndSend("example.test", 80, new Uint8Array(300_000));
      c.close(id);
      await c.ready();
      const p = peer.peers[0]!;
      await waitFor(() => p.reqs.some((r) => r.op === "close"), "the close");
      expect(p.reqs[0]).toEqual({ op: "connect", id, addr: "example.test", port: 80 });
      expect(p.sent(id).length).toBe(300_000);
      expect(p.reqs.at(-1)).toEqual({ op: "close", id });
      c.disconnect();
    } finally {
      peer.stop();
    }
  });

  test("a session that failed before opening: the pending open's onClose gets the failure; later calls throw ECLOSED", async () => {
    const c = new WasmnetClient(`ws://127.0.0.1:${freePort()}/`);
    const id = c.openAndSend("127.0.0.1", 7, "x");
    const err = await new Promise<WasmnetError | undefined>((r) => c.onClose(id, r));
    expect(err?.code).toBe("ECLOSED");
    expect(() => c.openAndSend("127.0.0.1", 7, "x")).toThrow(expect.objectContaining({ code: "ECLOSED" }) as never);
  });
});

// ---- against the real server ----

describe("against a real wasmnet server", () => {
  let srv: WasmnetServer;
  let policySrv: WasmnetServer;
  let echo: ReturnType<typeof echoServer>;
  const url = () => `ws://127.0.0.1:${srv.port}/`;

  beforeAll(async () => {
    echo = echoServer();
    srv = await createServer({ hostname: "127.0.0.1", port: 0, noPolicy: true, logger: silentLogger }).listen();
    policySrv = await createServer({ hostname: "127.0.0.1", port: 0, logger: silentLogger }).listen();
  });
  afterAll(async () => {
    await srv?.stop();
    await policySrv?.stop();
    echo?.stop();
  });

  for (const binary of [false, true]) {
    const framing = binary ? "binary" : "json";

    test(`${framing}: echo with replay; ids 1, 2, 3; resolve; refused and denied`, async () => {
      const c = new WasmnetClient(url(), { binary });
      const wire = wireOf(c);
      await c.ready();
      expect(c.version).toBe(2);
      const a = await c.connect("127.0.0.1", echo.port);
      c.send(a, "early bytes");
      // The echo arrives before onData is set: it must be replayed.
      await waitFor(() => wire.dataBytes(a) === 11, { what: "the echo on the wire", detail: () => wire.dataBytes(a) });
      const got: number[] = [];
      c.onData(a, (d) => got.push(...d));
      await waitFor(() => got.length === 11, "echo");
      expect(new TextDecoder().decode(new Uint8Array(got))).toBe("early bytes");
      const addrs = await c.resolve("localhost");
      expect(addrs).toContain("127.0.0.1");
      expect(await codeOf(c.connect("127.0.0.1", freePort()))).toBe("ECONNREFUSED");
      expect([a]).toEqual([1]);
      const closed = new Promise((r) => c.onClose(a, r));
      c.close(a);
      await closed;
      c.disconnect();

      const p = new WasmnetClient(`ws://127.0.0.1:${policySrv.port}/`, { binary });
      await p.ready();
      expect(await codeOf(p.connect("127.0.0.1", echo.port))).toBe("EPOLICY");
      p.disconnect();
    });

    test(`${framing}: openAndSend: 4 MiB sent behind the connect through the 1 MiB window, echoed intact`, async () => {
      const c = new WasmnetClient(url(), { binary });
      await c.ready();
      const payload = testBytes(4 << 20, 21);
      const got: Uint8Array[] = [];
      let n = 0;
      const id = c.openAndSend("127.0.0.1", echo.port, payload);
      // Before any answer: exactly one window is on its way, the rest waits for credit.
      expect(c.bufferedAmount(id)).toBe(payload.length - c.window);
      let closedWith: unknown = "open";
      c.onClose(id, (e) => (closedWith = e));
      c.onData(id, (d) => {
        got.push(d);
        n += d.length;
      });
      await waitFor(() => n === payload.length, { what: "4 MiB echoed", timeoutMs: 30_000, detail: () => n, failIf: () => closedWith !== "open" && `closed: ${closedWith}` });
      expect(sha256hex(Buffer.concat(got))).toBe(sha256hex(payload));
      c.disconnect();
    }, 40_000);

    test(`${framing}: openAndSend to a denied or refused destination ends that stream with the reason`, async () => {
      // policySrv's default policy denies loopback.
      const p = new WasmnetClient(`ws://127.0.0.1:${policySrv.port}/`, { binary });
      await p.ready();
      const codes: string[] = [];
      const errCodes = new Map<number, string[]>();
      p.webSocket.addEventListener("message", (m: MessageEvent) => {
        const e = typeof m.data === "string" ? decodeJsonEvent(m.data) : decodeBinaryEvent(new Uint8Array(m.data as ArrayBuffer));
        if (e.ev === "error") errCodes.set(e.id, [...(errCodes.get(e.id) ?? []), e.code]);
      });
      const id = p.openAndSend("127.0.0.1", echo.port, testBytes(p.window + 1000, 3));
      p.onError(id, (e) => codes.push(e.code));
      const waiting = p.sendAsync(id, "behind the window");
      const err = await new Promise<WasmnetError | undefined>((r) => p.onClose(id, r));
      expect(err?.code).toBe("EPOLICY");
      expect(err?.message).toContain("nonpublic");
      expect(await codeOf(waiting)).toBe("EPOLICY");
      // The server answers the sends that followed the refused connect with EBADID; the client
      // ignores them (the stream has already ended with its reason).
      await waitFor(() => (errCodes.get(id) ?? []).includes("EBADID"), { what: "the EBADID answers to the crossed sends", detail: () => [...errCodes] });
      expect(codes).toEqual(["EPOLICY"]);
      p.disconnect();

      const c = new WasmnetClient(url(), { binary });
      await c.ready();
      const refused = c.openAndSend("127.0.0.1", freePort(), "hello?");
      const e2 = await new Promise<WasmnetError | undefined>((r) => c.onClose(refused, r));
      expect(e2?.code).toBe("ECONNREFUSED");
      c.disconnect();
    });

    test(`${framing}: 8 MiB each way through stream() with half-close, intact`, async () => {
      const size = 8 << 20;
      const down = testBytes(size, 11);
      const up = testBytes(size, 12);
      const target = duplexServer(down);
      try {
        const upload = target.next().upload;
        const c = new WasmnetClient(url(), { binary });
        await c.ready();
        const id = await c.connect("127.0.0.1", target.port);
        const { readable, writable } = c.stream(id);
        const ended = new Promise<void>((r) => c.onEnd(id, r));
        const reading = (async () => {
          const h = new Bun.CryptoHasher("sha256");
          let n = 0;
          for await (const chunk of readable) {
            h.update(chunk);
            n += chunk.length;
          }
          return { bytes: n, sha256: h.digest("hex") };
        })();
        const writer = writable.getWriter();
        let maxQueued = 0;
        for (let o = 0; o < size; o += 100_000) {
          await writer.write(up.subarray(o, o + 100_000));
          maxQueued = Math.max(maxQueued, c.bufferedAmount(id));
        }
        await writer.close();
        expect(await reading).toEqual({ bytes: size, sha256: sha256hex(down) });
        expect(await upload).toEqual({ bytes: size, sha256: sha256hex(up) });
        await ended;
        // write() resolves once its chunk is within the window: at most one chunk waits.
        expect(maxQueued).toBeLessThanOrEqual(100_000);
        c.disconnect();
      } finally {
        target.stop();
      }
    }, 60_000);

    test(`${framing}: version 1 against the real server still echoes`, async () => {
      const c = new WasmnetClient(url(), { binary, version: 1 });
      await c.ready();
      expect(c.version).toBe(1);
      const id = await c.connect("127.0.0.1", echo.port);
      const payload = testBytes(3 << 20, 4);
      const got: Uint8Array[] = [];
      let n = 0;
      c.onData(id, (d) => {
        got.push(d);
        n += d.length;
      });
      await c.sendAsync(id, payload);
      await waitFor(() => n === payload.length, { what: "3 MiB echoed", timeoutMs: 20_000 });
      expect(sha256hex(Buffer.concat(got))).toBe(sha256hex(payload));
      c.disconnect();
    }, 30_000);
  }
});

const tlsNeeds = needing("openssl");
tlsNeeds.describe("openAndSend over TLS (real server, test CA)", () => {
  let pki: TestPki;
  let tlsSrv: WasmnetServer;
  let tlsEcho: ReturnType<typeof tlsEchoServer>;
  let rogue: ReturnType<typeof tlsEchoServer>;
  beforeAll(async () => {
    pki = makePki();
    tlsEcho = tlsEchoServer(pki.certPem, pki.keyPem);
    rogue = tlsEchoServer(pki.rogueCertPem, pki.rogueKeyPem);
    tlsSrv = await createServer({ hostname: "127.0.0.1", port: 0, noPolicy: true, extraCaPem: [pki.caPem], logger: silentLogger }).listen();
  });
  afterAll(async () => {
    await tlsSrv?.stop();
    tlsEcho?.stop();
    rogue?.stop();
  });

  test("the request rides behind connect_tls and is echoed; an untrusted certificate ends the stream with ETLS", async () => {
    const c = new WasmnetClient(`ws://127.0.0.1:${tlsSrv.port}/`, { binary: true });
    const id = c.openAndSend("localhost", tlsEcho.port, "sent before the handshake", { tls: true });
    let got = "";
    await new Promise<void>((resolve) =>
      c.onData(id, (d) => {
        got += new TextDecoder().decode(d);
        if (got.length >= 25) resolve();
      }),
    );
    expect(got).toBe("sent before the handshake");
    const bad = c.openAndSend("localhost", rogue.port, "never delivered", { tls: true });
    const err = await new Promise<WasmnetError | undefined>((r) => c.onClose(bad, r));
    expect(err?.code).toBe("ETLS");
    c.disconnect();
  });
});
