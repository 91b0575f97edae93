// Session and server limits through a real wasmnet server: max_connections, max_sessions,
// max_sessions_per_ip, the message cap, idle_timeout_secs, and [server] allowed_origins.
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { ADMISSION_CHECK_BURST, ADMISSION_CHECKS_PER_SEC } from "../src/constants.ts";
import { createLogger } from "../src/log.ts";
import { parsePolicy } from "../src/policy/load.ts";
import { TestClient } from "./helpers/client.ts";
import { startServer } from "./helpers/server.ts";
import { echoServer } from "./helpers/targets.ts";
import { waitFor } from "./helpers/wait.ts";

const echo = echoServer();
let cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

/** A policy allowing loopback targets, plus the given TOML. */
function policy(extra: string) {
  return parsePolicy(`[network]\ndeny = []\nallow = ["*"]\n${extra}`, "limits.test.toml");
}

async function server(extraToml: string, opts: Parameters<typeof startServer>[0] = {}) {
  const srv = await startServer({ policy: policy(extraToml), ...opts });
  cleanup.push(() => srv.stop());
  return srv;
}

async function client(url: string, framing: "json" | "binary" = "json", headers?: Record<string, string>) {
  const c = await TestClient.open(url, framing, headers);
  cleanup.push(() => c.close());
  return c;
}

/** The HTTP status line of a raw WebSocket upgrade request (101, or the refusal). `headers` add to or replace the handshake's; "" drops one. */
async function upgradeStatus(port: number, headers: Record<string, string> = {}): Promise<number> {
  const handshake: Record<string, string> = {
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64"),
    ...headers,
  };
  const lines = [
    "GET / HTTP/1.1",
    `Host: 127.0.0.1:${port}`,
    ...Object.entries(handshake).filter(([, v]) => v !== "").map(([k, v]) => `${k}: ${v}`),
  ];
  let got = "";
  const { promise, resolve, reject } = Promise.withResolvers<number>();
  const sock = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(s, d) {
        got += d.toString("latin1");
        const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
        if (m) {
          resolve(Number(m[1]));
          s.end();
        }
      },
      close() {
        reject(new Error(`connection closed; got ${JSON.stringify(got)}`));
      },
      error(_s, e) {
        reject(e);
      },
    },
  });
  sock.write(lines.join("\r\n") + "\r\n\r\n");
  return promise;
}

describe("session limits", () => {
  test("max_connections: the next connect gets ELIMIT naming the limit; closing one frees a slot", async () => {
    const srv = await server("max_connections = 2\n");
    const c = await client(srv.wsUrl);
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    expect((await c.connect(2, "127.0.0.1", echo.port)).ev).toBe("connected");
    const ev = await c.connect(3, "127.0.0.1", echo.port);
    expect(ev.ev).toBe("error");
    if (ev.ev !== "error") return;
    expect(ev.code).toBe("ELIMIT");
    expect(ev.msg).toContain("max_connections (2)");
    // UDP and listeners count as well.
    c.send({ op: "connect_udp", id: 4, addr: "127.0.0.1", port: echo.port });
    expect(await c.next(4)).toMatchObject({ ev: "error", code: "ELIMIT" });
    c.send({ op: "close", id: 1 });
    expect(await c.next(1)).toEqual({ ev: "closed", id: 1 });
    expect((await c.connect(5, "127.0.0.1", echo.port)).ev).toBe("connected");
    // Another session has its own allowance.
    const d = await client(srv.wsUrl);
    expect((await d.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
  });

  test("max_sessions_per_ip: the upgrade is refused with 429, and allowed again after a close", async () => {
    const srv = await server("[limits]\nmax_sessions_per_ip = 2\n");
    const a = await client(srv.wsUrl);
    const b = await client(srv.wsUrl);
    expect(await upgradeStatus(srv.port)).toBe(429);
    await expect(TestClient.open(srv.wsUrl)).rejects.toThrow();
    b.close();
    await waitFor(() => srv.handler.ctx.metrics.sessions <= 1, "the closed session to be released");
    const c = await client(srv.wsUrl);
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    void a;
  });

  test("plain GET admission checks are rate-limited per address (ADMISSION_CHECK_BURST, then ADMISSION_CHECKS_PER_SEC); upgrades are not", async () => {
    const srv = await server("[limits]\nmax_sessions_per_ip = 50\n");
    // Checks as fast as they go until one is refused: the burst, plus what refilled meanwhile.
    const started = performance.now();
    let admitted = 0;
    let refused: Response | null = null;
    while (refused === null && admitted < 10 * ADMISSION_CHECK_BURST) {
      const r = await fetch(srv.url);
      if (r.status === 426) admitted++;
      else refused = r;
    }
    const refilled = ((performance.now() - started) / 1000) * ADMISSION_CHECKS_PER_SEC;
    expect(admitted).toBeGreaterThanOrEqual(ADMISSION_CHECK_BURST);
    expect(admitted).toBeLessThanOrEqual(ADMISSION_CHECK_BURST + Math.ceil(refilled));
    expect([refused?.status, (await refused?.text())?.trim()]).toEqual([429, "too many admission checks from 127.0.0.1; try again later"]);
    // Sessions themselves are counted as before.
    expect(await upgradeStatus(srv.port)).toBe(101);
    expect((await (await client(srv.wsUrl)).connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    // The checks come back with time: one every 1/ADMISSION_CHECKS_PER_SEC s.
    await waitFor(async () => (await fetch(srv.url)).status === 426, { what: "an admission check allowed again", timeoutMs: 5000 });
  });

  test("a flood of plain GET checks with a bad token is limited too: 429 past the burst, before the token is looked at", async () => {
    const srv = await server("[limits]\nmax_sessions_per_ip = 50\n");
    const started = performance.now();
    let unauthorized = 0;
    let refused: Response | null = null;
    while (refused === null && unauthorized < 10 * ADMISSION_CHECK_BURST) {
      const r = await fetch(srv.url, { headers: { authorization: "Bearer not.a.token" } });
      if (r.status === 401) unauthorized++;
      else refused = r;
    }
    const refilled = ((performance.now() - started) / 1000) * ADMISSION_CHECKS_PER_SEC;
    expect(unauthorized).toBeGreaterThanOrEqual(ADMISSION_CHECK_BURST);
    expect(unauthorized).toBeLessThanOrEqual(ADMISSION_CHECK_BURST + Math.ceil(refilled));
    expect([refused?.status, (await refused?.text())?.trim()]).toEqual([429, "too many admission checks from 127.0.0.1; try again later"]);
  });

  test("an upgrade without a valid Sec-WebSocket-Key is refused with 400 before it takes a session unit; a wrong version with 426", async () => {
    const srv = await server("[limits]\nmax_sessions = 1\n");
    for (const key of ["", "abc", "x".repeat(24)]) expect(await upgradeStatus(srv.port, { "Sec-WebSocket-Key": key })).toBe(400);
    expect(await upgradeStatus(srv.port, { "Sec-WebSocket-Version": "8" })).toBe(426);
    // With the one session slot taken, admission would answer 503: the handshake is refused first.
    const a = await client(srv.wsUrl);
    expect(await upgradeStatus(srv.port, { "Sec-WebSocket-Key": "abc" })).toBe(400);
    expect(await upgradeStatus(srv.port)).toBe(503);
    void a;
  });

  test("max_sessions: the upgrade is refused with 503", async () => {
    const srv = await server("[limits]\nmax_sessions = 1\nmax_sessions_per_ip = 0\n");
    await client(srv.wsUrl);
    expect(await upgradeStatus(srv.port)).toBe(503);
    expect((await fetch(new URL("/healthz", srv.url))).status).toBe(200); // full is not unhealthy
  });

  test("a message over max_message_bytes gets ELIMIT on its id, ends that stream, and the session keeps working", async () => {
    const srv = await server("[limits]\nmax_message_bytes = 1024\n");
    const c = await client(srv.wsUrl);
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    expect((await c.connect(3, "127.0.0.1", echo.port)).ev).toBe("connected");
    // Text (JSON), like binary: an oversized send leaves a hole in its stream, so the stream ends.
    c.raw(JSON.stringify({ op: "send", id: 1, data: "x".repeat(2000) }));
    const ev = await c.next(1);
    expect(ev).toMatchObject({ ev: "error", id: 1, code: "ELIMIT" });
    if (ev.ev === "error") expect(ev.msg).toContain("max_message_bytes (1024)");
    // The cap counts UTF-8 bytes, not characters: 600 × "é" is 1200 bytes.
    c.raw(JSON.stringify({ op: "resolve", id: 2, name: "é".repeat(600) }));
    expect(await c.next(2)).toMatchObject({ ev: "error", id: 2, code: "ELIMIT" });
    // Without a readable id the error goes to id 0.
    c.raw(`{"op":"send","data":"${"x".repeat(2000)}"`);
    expect(await c.next(0)).toMatchObject({ ev: "error", id: 0, code: "ELIMIT" });
    // The other stream and the session go on.
    c.send({ op: "send", id: 3, data: new TextEncoder().encode("still here") });
    await c.waitBytes(3, 10);
    expect(new TextDecoder().decode(c.received(3))).toBe("still here");
    expect(c.closed).toBe(false);
  });

  test("an oversized binary send closes that stream with ELIMIT; others go on", async () => {
    const srv = await server("[limits]\nmax_message_bytes = 1024\n");
    const c = await client(srv.wsUrl, "binary");
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    expect((await c.connect(2, "127.0.0.1", echo.port)).ev).toBe("connected");
    c.send({ op: "send", id: 1, data: new Uint8Array(2000) });
    expect(await c.next(1)).toMatchObject({ ev: "error", id: 1, code: "ELIMIT" });
    c.send({ op: "send", id: 2, data: new Uint8Array([1, 2, 3]) });
    await c.waitBytes(2, 3);
    expect(c.closed).toBe(false);
  });

  test("a binary frame far above the hard cap closes the WebSocket with 1009", async () => {
    const srv = await server("[limits]\nmax_message_bytes = 1024\n");
    const c = await client(srv.wsUrl, "binary");
    const closed = new Promise<number>((r) => c.ws.addEventListener("close", (e) => r(e.code)));
    const { HARD_MESSAGE_MARGIN } = await import("../src/constants.ts");
    c.raw(new Uint8Array(1024 + HARD_MESSAGE_MARGIN + 1));
    expect(await closed).toBe(1009);
    // The server and other sessions are fine.
    const d = await client(srv.wsUrl);
    expect((await d.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
  });
});

describe("idle_timeout_secs", () => {
  test("a stream with no bytes either way for N s is closed with ETIMEDOUT; a busy one stays", async () => {
    const lines: string[] = [];
    const srv = await server("[limits]\nidle_timeout_secs = 1\n", { logger: createLogger("info", (l) => lines.push(l)) });
    const c = await client(srv.wsUrl);
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    expect((await c.connect(2, "127.0.0.1", echo.port)).ev).toBe("connected");
    const t0 = performance.now();
    let stop = false;
    const busy = (async () => {
      while (!stop) {
        c.send({ op: "send", id: 2, data: new Uint8Array([7]) });
        await Bun.sleep(300); // the busy stream's pace: a byte every 300 ms, well inside the 1 s limit
      }
    })();
    const ev = await c.next(1, 10_000);
    const took = performance.now() - t0;
    expect(ev).toMatchObject({ ev: "error", id: 1, code: "ETIMEDOUT" });
    if (ev.ev === "error") expect(ev.msg).toContain("idle_timeout_secs");
    // The idle timeout is the feature: never early; the upper bound is generous for a loaded machine.
    expect(took).toBeGreaterThan(900);
    expect(took).toBeLessThan(5000);
    await Bun.sleep(1200); // well past the limit for the busy stream
    stop = true;
    await busy;
    expect(c.events.filter((e) => e.id === 2)).toEqual([]);
    const n = c.receivedBytes(2);
    c.send({ op: "send", id: 2, data: new Uint8Array([8]) });
    await c.waitBytes(2, n + 1);
    const audit = lines.map((l) => JSON.parse(l)).find((l) => l.msg === "stream end" && l.id === 1);
    expect(audit?.reason).toBe("idle timeout");
  });

  test("idle UDP sockets are closed too", async () => {
    const srv = await server("[limits]\nidle_timeout_secs = 1\n");
    const c = await client(srv.wsUrl);
    c.send({ op: "connect_udp", id: 1, addr: "127.0.0.1", port: echo.port });
    expect((await c.next(1)).ev).toBe("udp_bound");
    expect(await c.next(1, 10_000)).toMatchObject({ ev: "error", code: "ETIMEDOUT" });
    c.send({ op: "send", id: 1, data: new Uint8Array([1]) });
    expect(await c.next(1)).toMatchObject({ ev: "error", code: "EBADID" });
  });

  test("0 turns it off", async () => {
    const srv = await server("[limits]\nidle_timeout_secs = 0\n");
    const c = await client(srv.wsUrl);
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    await Bun.sleep(1500); // past where a 1 s timeout would fire: nothing may happen
    expect(c.events.filter((e) => e.id === 1)).toEqual([]);
  });
});

describe("[server] allowed_origins", () => {
  test("a listed Origin is upgraded (101), others and none are refused (403)", async () => {
    const srv = await server('[server]\nallowed_origins = ["https://app.example.com"]\n');
    expect(await upgradeStatus(srv.port, { Origin: "https://app.example.com" })).toBe(101);
    expect(await upgradeStatus(srv.port, { Origin: "https://evil.example.com" })).toBe(403);
    expect(await upgradeStatus(srv.port, { Origin: "http://app.example.com" })).toBe(403);
    expect(await upgradeStatus(srv.port)).toBe(403);
    // And through a real WebSocket client.
    const c = await client(srv.wsUrl, "json", { Origin: "https://app.example.com" });
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    await expect(TestClient.open(srv.wsUrl, "json", { Origin: "https://evil.example.com" })).rejects.toThrow();
  });

  test("the server warns at start-up when none is set, and not when one is", async () => {
    const warned: string[] = [];
    const log = createLogger("warn", (l) => warned.push(l));
    await server("", { logger: log });
    const lines = warned.map((l) => JSON.parse(l));
    expect(lines.some((l) => l.level === "warn" && /allowed_origins/.test(l.msg))).toBe(true);
    const quiet: string[] = [];
    await server('[server]\nallowed_origins = ["https://app.example.com"]\n', { logger: createLogger("warn", (l) => quiet.push(l)) });
    expect(quiet.filter((l) => l.includes("allowed_origins"))).toEqual([]);
  });
});

afterAll(() => echo.stop());
