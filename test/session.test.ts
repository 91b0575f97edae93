// Session on its own (src/session/session.ts): a recording Transport in place of a protocol
// adapter, the real socket layer underneath, targets on 127.0.0.1. The requests go in as the
// one request model; what comes out is events.
import { afterAll, describe, expect, test } from "bun:test";
import { createLogger } from "../src/log.ts";
import { defaultPolicy, parsePolicy, type PolicyConfig } from "../src/policy/load.ts";
import type { Event, Request } from "../src/protocol/messages.ts";
import type { SessionContext } from "../src/session/context.ts";
import { Metrics } from "../src/session/metrics.ts";
import { Session, type SessionOptions } from "../src/session/session.ts";
import type { Transport } from "../src/session/transport.ts";
import { echoServer, sinkServer, sourceServer } from "./helpers/targets.ts";
import { waitFor, waitForSteady } from "./helpers/wait.ts";

class RecordingTransport implements Transport {
  events: Event[] = [];
  /** What buffered() reports: the test plays the client's WebSocket filling up and draining. */
  backlog = 0;
  inputPaused = 0;
  send(ev: Event) {
    this.events.push(ev);
  }
  buffered() {
    return this.backlog;
  }
  pauseInput() {
    this.inputPaused++;
  }
  resumeInput() {
    this.inputPaused--;
  }
  of(id: number) {
    return this.events.filter((e) => e.id === id);
  }
  last(id: number) {
    return this.of(id).at(-1);
  }
  bytes(id: number) {
    return this.of(id).reduce((n, e) => n + (e.ev === "data" ? e.data.length : 0), 0);
  }
}

const logLines: string[] = [];
function open(policy: PolicyConfig, options: Partial<SessionOptions> = {}) {
  const ctx: SessionContext = {
    policy,
    resolver: async (name) => ({ "echo.test": ["127.0.0.1"], "inside.test": ["127.0.0.1"] })[name] ?? [],
    metrics: new Metrics(),
    log: createLogger("debug", (l) => logLines.push(l)),
    extraCa: [],
    pool: null,
    highWatermark: 1 << 20,
    lowWatermark: 256 << 10,
    dnsTimeoutMs: 1000,
  };
  const t = new RecordingTransport();
  const s = new Session(ctx, t, { remote: "127.0.0.1", ...options });
  const req = (r: Request) => s.handle({ ok: true, req: r });
  return { s, t, ctx, req };
}

const loopback = () => parsePolicy(`[network]\ndeny = []\nallow = ["*"]\nmax_connections = 3\nmax_bandwidth_mbps = 0\n`, "session.test.toml");
const echo = echoServer();
afterAll(() => echo.stop());

describe("Session", () => {
  test("hello negotiates version 2 and answers with the window and limits; a second hello is EBADREQ", () => {
    const { t, req, s } = open(defaultPolicy());
    req({ op: "hello", id: 0, version: 7, features: ["flow", "half_close", "teleport"] });
    expect(t.events[0]).toMatchObject({ ev: "hello", version: 2, features: ["flow", "half_close"], window: 1 << 20, limits: { max_connections: 50 } });
    expect([s.version, s.flow, s.halfClose]).toEqual([2, true, true]);
    req({ op: "hello", id: 0, version: 2, features: [] });
    expect(t.events[1]).toMatchObject({ ev: "error", id: 0, code: "EBADREQ" });
    s.destroy();
  });

  test("adapters open a session with flow control on, without any hello", () => {
    const { s } = open(defaultPolicy(), { flow: true });
    expect([s.version, s.flow, s.halfClose]).toEqual([2, true, false]);
    s.destroy();
  });

  test("connect, send, data, close — through the real socket layer", async () => {
    const { t, req, s, ctx } = open(loopback());
    req({ op: "connect", id: 1, addr: "echo.test", port: echo.port });
    await waitFor(() => t.last(1)?.ev === "connected", "connected");
    expect(ctx.metrics.sockets.tcp).toBe(1);
    req({ op: "send", id: 1, data: new TextEncoder().encode("ping") });
    await waitFor(() => t.bytes(1) === 4, "the echo");
    req({ op: "close", id: 1 });
    expect(t.last(1)).toEqual({ ev: "closed", id: 1 });
    await waitFor(() => ctx.metrics.sockets.tcp === 0, "the socket count to drop");
    expect(logLines.some((l) => l.includes('"msg":"stream end"') && l.includes('"name":"echo.test"') && l.includes('"bytes_up":4'))).toBe(true);
    s.destroy();
  });

  test("ids: EIDINUSE for a live id, EBADID for an unknown one, ELIMIT past max_connections; a closed id is free again", async () => {
    const { t, req, s } = open(loopback());
    for (const id of [1, 2, 3]) req({ op: "connect", id, addr: "127.0.0.1", port: echo.port });
    req({ op: "connect", id: 1, addr: "127.0.0.1", port: echo.port });
    expect(t.last(1)).toMatchObject({ ev: "error", code: "EIDINUSE" });
    req({ op: "connect", id: 4, addr: "127.0.0.1", port: echo.port });
    expect(t.last(4)).toMatchObject({ ev: "error", code: "ELIMIT" });
    req({ op: "send", id: 9, data: new Uint8Array(1) });
    expect(t.last(9)).toMatchObject({ ev: "error", code: "EBADID" });
    req({ op: "close", id: 3 });
    req({ op: "connect", id: 4, addr: "127.0.0.1", port: echo.port });
    await waitFor(() => t.last(4)?.ev === "connected", "id 4 to connect once id 3 is closed");
    s.destroy();
  });

  test("a refusal is `denied` with the rule's reason, counted by rule, and frees the id", async () => {
    const { t, req, s, ctx } = open(defaultPolicy());
    req({ op: "connect", id: 1, addr: "inside.test", port: 80 });
    await waitFor(() => t.of(1).length > 0, "an answer");
    expect(t.last(1)).toMatchObject({ ev: "denied", id: 1 });
    expect(ctx.metrics.denials.get("nonpublic")).toBe(1);
    expect(ctx.metrics.sockets.tcp).toBe(0);
    req({ op: "resolve", id: 1, name: "localhost" });
    expect(t.last(1)).toMatchObject({ ev: "denied" }); // the id was free again
    s.destroy();
  });

  test("a full client holds every stream until it drains under the low watermark", async () => {
    const src = sourceServer(32 * 1024 * 1024);
    const { t, req, s } = open(loopback());
    req({ op: "connect", id: 1, addr: "127.0.0.1", port: src.port });
    req({ op: "connect", id: 2, addr: "127.0.0.1", port: src.port });
    await waitFor(() => t.bytes(1) > 0 && t.bytes(2) > 0, "data on both streams");
    t.backlog = 2 << 20; // the client's WebSocket is above the high watermark
    const held = await waitForSteady(() => t.bytes(1) + t.bytes(2), { what: "both streams to stop", quietMs: 300 });
    expect(held).toBeLessThan(16 * 1024 * 1024);
    t.backlog = 300 << 10; // drained, but not under the low watermark yet
    s.drained();
    expect(await waitForSteady(() => t.bytes(1) + t.bytes(2), { what: "still held", quietMs: 200 })).toBe(held);
    t.backlog = 0;
    s.drained();
    await waitFor(() => t.bytes(1) + t.bytes(2) === 64 * 1024 * 1024, { what: "everything, once drained", detail: () => t.bytes(1) + t.bytes(2) });
    s.destroy();
    src.stop();
  });

  test("an over-window send ends only its own stream with ELIMIT", async () => {
    const sink = sinkServer({ paused: true });
    const { t, req, s } = open(loopback(), { flow: true });
    req({ op: "connect", id: 1, addr: "127.0.0.1", port: sink.port });
    req({ op: "connect", id: 2, addr: "127.0.0.1", port: echo.port });
    await waitFor(() => t.last(1)?.ev === "connected" && t.last(2)?.ev === "connected", "both connected");
    req({ op: "send", id: 1, data: new Uint8Array(s.window + 1) });
    expect(t.last(1)).toMatchObject({ ev: "error", code: "ELIMIT" });
    req({ op: "send", id: 2, data: new Uint8Array(10) });
    await waitFor(() => t.bytes(2) === 10, "stream 2 still echoes");
    s.destroy();
    sink.stop();
  });

  test("destroy closes every socket at once; later requests are ignored", async () => {
    const sink = sinkServer();
    const { t, req, s, ctx } = open(loopback());
    req({ op: "connect", id: 1, addr: "127.0.0.1", port: sink.port });
    req({ op: "connect", id: 2, addr: "127.0.0.1", port: sink.port });
    await waitFor(() => sink.sockets.size === 2, "two accepted connections");
    s.destroy();
    await waitFor(() => sink.sockets.size === 0, "the target to see both closed");
    expect(ctx.metrics.sessions).toBe(0);
    const before = t.events.length;
    req({ op: "connect", id: 3, addr: "127.0.0.1", port: sink.port });
    expect(t.events.length).toBe(before);
    sink.stop();
  });

  test("noteError counts an adapter's own error like the session's", () => {
    const { s, ctx, t } = open(defaultPolicy());
    s.noteError(5, "EBADREQ", "bad packet");
    expect(ctx.metrics.errors.get("EBADREQ")).toBe(1);
    expect(t.events).toEqual([]);
    s.destroy();
  });
});
