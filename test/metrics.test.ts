// GET /metrics (Prometheus text format) and /healthz through a real wasmnet server.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parsePolicy } from "../src/policy/load.ts";
import { TestClient } from "./helpers/client.ts";
import { parsePrometheus, scrape, value } from "./helpers/prometheus.ts";
import { startServer } from "./helpers/server.ts";
import { echoServer, freePort } from "./helpers/targets.ts";
import { waitFor } from "./helpers/wait.ts";

let srv: Awaited<ReturnType<typeof startServer>>;
const echo = echoServer();

beforeAll(async () => {
  const policy = parsePolicy(`[network]\ndeny = ["127.0.0.2", "*:25"]\nallow = ["*"]\nbind_ports = "1024-65535"\n`, "metrics.test.toml");
  srv = await startServer({ policy });
});
afterAll(async () => {
  await srv.stop();
  echo.stop();
});

describe("/metrics", () => {
  test("parses as Prometheus text with HELP and TYPE for every family", async () => {
    const m = await scrape(srv.url);
    for (const name of ["wasmnet_sessions", "wasmnet_sessions_total", "wasmnet_sockets", "wasmnet_bytes_total", "wasmnet_denials_total", "wasmnet_errors_total", "wasmnet_pool_total", "wasmnet_udp_dropped_total"]) {
      const f = m.get(name);
      expect(f).toBeDefined();
      expect(f!.help.length).toBeGreaterThan(0);
      expect(["counter", "gauge"]).toContain(f!.type);
    }
    for (const [name, f] of m) if (name.endsWith("_total")) expect(f.type).toBe("counter");
    expect(m.get("wasmnet_sockets")!.samples.map((s) => s.labels.kind).sort()).toEqual(["inbound", "listener", "tcp", "tls", "udp"]);
  });

  test("the parser rejects what is not Prometheus text", () => {
    expect(() => parsePrometheus("hello world\n")).toThrow();
    expect(() => parsePrometheus('x{a="1} 2\n')).toThrow();
    expect(() => parsePrometheus("# TYPE x counter\nx abc\n")).toThrow();
  });

  test("counters move with traffic: sessions, bytes, sockets by kind, denials by rule, errors by code", async () => {
    const m0 = await scrape(srv.url);
    const c = await TestClient.open(srv.wsUrl);
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    c.send({ op: "connect_udp", id: 2, addr: "127.0.0.1", port: echo.port });
    expect((await c.next(2)).ev).toBe("udp_bound");
    c.send({ op: "bind", id: 3, addr: "127.0.0.1", port: 0 });
    expect((await c.next(3)).ev).toBe("listening");
    c.send({ op: "send", id: 1, data: new Uint8Array(1000) });
    await c.waitBytes(1, 1000);

    const m1 = await scrape(srv.url);
    expect(value(m1, "wasmnet_sessions") - value(m0, "wasmnet_sessions")).toBe(1);
    expect(value(m1, "wasmnet_sessions_total") - value(m0, "wasmnet_sessions_total")).toBe(1);
    expect(value(m1, "wasmnet_sockets", { kind: "tcp" })).toBe(1);
    expect(value(m1, "wasmnet_sockets", { kind: "udp" })).toBe(1);
    expect(value(m1, "wasmnet_sockets", { kind: "listener" })).toBe(1);
    expect(value(m1, "wasmnet_bytes_total", { direction: "up" }) - value(m0, "wasmnet_bytes_total", { direction: "up" })).toBe(1000);
    expect(value(m1, "wasmnet_bytes_total", { direction: "down" }) - value(m0, "wasmnet_bytes_total", { direction: "down" })).toBe(1000);

    // Denials by the rule that decided; errors by code.
    expect((await c.connect(4, "127.0.0.2", echo.port)).ev).toBe("denied");
    expect((await c.connect(5, "127.0.0.1", 25)).ev).toBe("denied");
    expect((await c.connect(6, "127.0.0.2", 25)).ev).toBe("denied");
    expect(await c.connect(7, "127.0.0.1", freePort())).toMatchObject({ ev: "error", code: "ECONNREFUSED" });
    c.send({ op: "close", id: 99 });
    expect(await c.next(99)).toMatchObject({ ev: "error", code: "EBADID" });
    const m2 = await scrape(srv.url);
    const d = (rule: string) => value(m2, "wasmnet_denials_total", { rule }) - value(m0, "wasmnet_denials_total", { rule });
    expect(d("127.0.0.2")).toBe(2);
    expect(d("*:25")).toBe(1);
    const e = (code: string) => value(m2, "wasmnet_errors_total", { code }) - value(m0, "wasmnet_errors_total", { code });
    expect(e("ECONNREFUSED")).toBe(1);
    expect(e("EBADID")).toBe(1);
    expect(value(m2, "wasmnet_sockets", { kind: "tcp" })).toBe(1); // the denied and failed ones are not counted

    // Everything closes with the session: the gauges come back down.
    c.close();
    await waitFor(() => srv.handler.ctx.metrics.sessions <= value(m0, "wasmnet_sessions"), "the session to be released");
    const m3 = await scrape(srv.url);
    expect(value(m3, "wasmnet_sessions")).toBe(value(m0, "wasmnet_sessions"));
    for (const kind of ["tcp", "tls", "udp", "listener", "inbound"]) expect(value(m3, "wasmnet_sockets", { kind })).toBe(0);
  });
});

describe("sessions by protocol", () => {
  test("wasmnet_protocol_sessions{kind} counts each endpoint's sessions while they are open", async () => {
    const before = await scrape(srv.url);
    const open = async (path: string) => {
      const ws = new WebSocket(new URL(path, srv.wsUrl));
      ws.binaryType = "arraybuffer";
      await new Promise((r, j) => ((ws.onopen = r), (ws.onerror = j)));
      return ws;
    };
    const sockets = [await open("/"), await open("/wisp/"), await open("/posix/"), await open(`/ws/127.0.0.1:${echo.port}`)];
    const m = await scrape(srv.url);
    for (const kind of ["wasmnet", "wisp", "posix", "wsproxy"])
      expect([kind, value(m, "wasmnet_protocol_sessions", { kind }) - Math.max(0, value(before, "wasmnet_protocol_sessions", { kind }))]).toEqual([kind, 1]);
    for (const ws of sockets) ws.close();
    await waitFor(async () => value(await scrape(srv.url), "wasmnet_protocol_sessions", { kind: "posix" }) === 0, "the posix session to be counted out");
  });
});

describe("/healthz", () => {
  test("200 while serving, 503 while draining", async () => {
    const own = await startServer({ noPolicy: true });
    try {
      const r = await fetch(new URL("/healthz", own.url));
      expect(r.status).toBe(200);
      const c = await TestClient.open(own.wsUrl);
      const closed = new Promise<number>((res) => c.ws.addEventListener("close", (e) => res(e.code)));
      own.handler.drain(0.2); // open sessions get 0.2 s (not the default drain_secs), then 1001
      expect((await fetch(new URL("/healthz", own.url))).status).toBe(503);
      expect(await closed).toBe(1001); // open sessions are closed cleanly
      await expect(TestClient.open(own.wsUrl)).rejects.toThrow(); // and no new ones start
      expect((await fetch(new URL("/metrics", own.url))).status).toBe(200);
    } finally {
      await own.stop();
    }
  });
});
