// Under pressure (issue 11), against a server in its own process so its memory is its own:
// UDP toward a client that stops reading is dropped above the high watermark (not queued until
// the session dies), the drain a load balancer can see, and the server-wide memory budget with
// sessions that each hold an incomplete message.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { connect, type Socket as NetSocket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeBinaryRequest } from "../src/protocol/binary.ts";
import { TestClient } from "./helpers/client.ts";
import { metricValue } from "./helpers/prometheus.ts";
import { rawWebSocket } from "./helpers/raw-ws.ts";
import { spawnServer } from "./helpers/spawn.ts";
import { echoServer, udpFloodSource } from "./helpers/targets.ts";
import { waitFor } from "./helpers/wait.ts";

const MiB = 1024 * 1024;

describe("UDP toward a client that stops reading", () => {
  test("datagrams above the high watermark are dropped and counted; RSS stays flat; the session and its TCP stream survive", async () => {
    const child = await spawnServer(["--no-policy"]);
    const echo = echoServer();
    // A source that, once the relay says hello, floods it: 8 KiB datagrams, ~24 MB/s for 3 s.
    const datagram = 8192;
    const source = await udpFloodSource({ datagram, bytesPerSec: 3000 * datagram, ms: 3000 });
    const ws = await rawWebSocket(child.port);
    ws.sendBinary(encodeBinaryRequest({ op: "connect", id: 1, addr: "127.0.0.1", port: echo.port }));
    ws.sendBinary(encodeBinaryRequest({ op: "connect_udp", id: 2, addr: "127.0.0.1", port: source.port }));
    await waitFor(async () => (await metricValue(child.url, "wasmnet_sockets", { kind: "udp" })) === 1, "the UDP socket to be bound");
    ws.pause(); // from now on the client reads nothing
    const before = child.rssBytes();
    ws.sendBinary(encodeBinaryRequest({ op: "send", id: 2, data: new Uint8Array([1]) })); // the flood starts
    await waitFor(() => source.sentBytes() > 60 * MiB, { what: "60 MiB of datagrams sent", timeoutMs: 20_000, detail: () => source.sentBytes() });
    const growth = child.rssBytes() - before;
    const dropped = await metricValue(child.url, "wasmnet_udp_dropped_total", { reason: "backpressure" });
    console.log(`udp flood into a paused client: ${source.sentBytes() / datagram} datagrams sent, ${dropped} dropped for backpressure, RSS +${(growth / MiB).toFixed(1)} MiB`);
    // Kernel buffers and the 1 MiB high watermark, not 60 MiB of queued datagrams. (Loopback
    // also drops some in the kernel when the relay's receive buffer is full: not counted here.)
    expect(growth).toBeLessThan(12 * MiB);
    expect(dropped * datagram).toBeGreaterThan(4 * MiB); // what would otherwise have queued
    // The session was not closed for it: still one session, and its TCP stream still open.
    expect(await metricValue(child.url, "wasmnet_sessions")).toBe(1);
    expect(await metricValue(child.url, "wasmnet_sockets", { kind: "tcp" })).toBe(1);
    ws.resume();
    const got = ws.received();
    ws.sendBinary(encodeBinaryRequest({ op: "send", id: 1, data: new TextEncoder().encode("still here") }));
    await waitFor(() => ws.received() > got, "the TCP stream's echo once the client reads again");
    ws.close();
    source.stop();
    echo.stop();
    await child.stop();
  }, 60_000);
});

describe("drain (SIGTERM): a load balancer can see it", () => {
  test("listener up, /healthz 503, new sessions 503, open ones go on for --drain-secs, then 1001 and exit 0", async () => {
    const child = await spawnServer(["--no-policy", "--drain-secs", "2"]);
    const echo = echoServer();
    const c = await TestClient.open(child.wsUrl);
    const closed = new Promise<{ code: number; at: number }>((r) => c.ws.addEventListener("close", (e) => r({ code: e.code, at: performance.now() })));
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    const t0 = performance.now();
    child.proc.kill("SIGTERM");
    await waitFor(async () => (await fetch(new URL("/healthz", child.url))).status === 503, "/healthz to answer 503");
    const refused = await fetch(child.url, { headers: { upgrade: "websocket", connection: "Upgrade", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" } });
    expect(refused.status).toBe(503);
    // The open session keeps working during the drain.
    c.send({ op: "send", id: 1, data: new TextEncoder().encode("draining") });
    await c.waitBytes(1, 8);
    const { code, at } = await closed;
    expect(code).toBe(1001);
    const after = (at - t0) / 1000;
    console.log(`drain: session closed with ${code} after ${after.toFixed(2)} s (drain_secs 2)`);
    expect(after).toBeGreaterThan(1.5); // not before the drain time…
    expect(after).toBeLessThan(10); // …and not much after (generous: a loaded machine)
    expect(await child.proc.exited).toBe(0);
    echo.stop();
  }, 30_000);

  test("a second signal ends the drain at once", async () => {
    const child = await spawnServer(["--no-policy", "--drain-secs", "30"]);
    const c = await TestClient.open(child.wsUrl);
    const closed = new Promise<number>((r) => c.ws.addEventListener("close", (e) => r(e.code)));
    child.proc.kill("SIGTERM");
    await waitFor(async () => (await fetch(new URL("/healthz", child.url))).status === 503, "/healthz to answer 503");
    const t0 = performance.now();
    child.proc.kill("SIGINT");
    expect(await closed).toBe(1001);
    expect(await child.proc.exited).toBe(0);
    expect(performance.now() - t0).toBeLessThan(10_000); // far from the 30 s drain
  }, 30_000);
});

describe("the server-wide memory budget", () => {
  /** A WebSocket that declares a message of `size` bytes and sends all but one byte of it. */
  function incomplete(port: number, size: number): Promise<{ status: number; socket: NetSocket }> {
    return new Promise((resolve, reject) => {
      const s = connect(port, "127.0.0.1");
      s.on("error", reject);
      s.once("connect", () => {
        s.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
        s.once("data", (d) => {
          const status = Number(/^HTTP\/1\.1 (\d+)/.exec(d.toString())?.[1] ?? 0);
          if (status === 101) {
            const head = Buffer.alloc(14);
            head[0] = 0x82;
            head[1] = 0x80 | 127;
            head.writeBigUInt64BE(BigInt(size), 2); // then a zero mask
            s.write(head);
            s.write(Buffer.alloc(size - 1));
          }
          resolve({ status, socket: s });
        });
      });
    });
  }

  test("200 sessions each holding an incomplete message stay within the budget; new sessions get 503 and work again when it clears", async () => {
    const probe = await spawnServer(["--no-policy"]);
    const baseline = probe.rssBytes();
    await probe.stop();
    const budgetMiB = Math.ceil(baseline / MiB) + 64;
    const dir = mkdtempSync(join(tmpdir(), "wasmnet-budget-"));
    writeFileSync(join(dir, "policy.toml"), `[network]\ndeny = []\nallow = ["*"]\n[limits]\nmax_memory_mb = ${budgetMiB}\nmax_sessions_per_ip = 0\nmax_sessions = 0\n`);
    const child = await spawnServer(["--policy", join(dir, "policy.toml")]);
    const echo = echoServer();
    const early = await TestClient.open(child.wsUrl); // a session from before the pressure
    const held: NetSocket[] = [];
    let refused = 0;
    let peak = 0;
    for (let i = 0; i < 200; i++) {
      const { status, socket } = await incomplete(child.port, MiB);
      if (status === 101) held.push(socket);
      else {
        expect(status).toBe(503);
        refused++;
        socket.destroy();
      }
      peak = Math.max(peak, child.rssBytes());
    }
    await Bun.sleep(300); // the last messages land
    peak = Math.max(peak, child.rssBytes());
    console.log(`memory budget ${budgetMiB} MiB (baseline ${(baseline / MiB).toFixed(0)} MiB): ${held.length} sessions admitted, ${refused} refused with 503, peak RSS ${(peak / MiB).toFixed(0)} MiB`);
    expect(refused).toBeGreaterThan(0);
    // Within the budget, plus what sessions admitted just before it was crossed could add.
    expect(peak).toBeLessThan((budgetMiB + 24) * MiB);
    expect(await metricValue(child.url, "wasmnet_overloaded")).toBe(1);
    // New streams on an existing session are refused while over it.
    expect(await early.connect(1, "127.0.0.1", echo.port)).toMatchObject({ ev: "error", code: "ELIMIT" });
    for (const s of held) s.destroy();
    await waitFor(async () => (await metricValue(child.url, "wasmnet_overloaded")) === 0, { what: "the budget to clear once the sessions are gone", timeoutMs: 15_000 });
    const fresh = await TestClient.open(child.wsUrl);
    expect((await fresh.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    fresh.close();
    early.close();
    echo.stop();
    await child.stop();
  }, 90_000);
});
