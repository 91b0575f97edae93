// Memory stays bounded whatever a client does (docs/protocol.md#flow-control, #version-1-stream-buffer): a client that stops reading
// pauses the target instead of filling the server; a target that stops reading ends only its
// own stream with ELIMIT.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { encodeBinaryRequest } from "../src/protocol/binary.ts";
import { TestClient } from "./helpers/client.ts";
import { rawWebSocket } from "./helpers/raw-ws.ts";
import { spawnServer, type Child } from "./helpers/spawn.ts";
import { echoServer, sinkServer } from "./helpers/targets.ts";
import { waitFor, waitForSteady } from "./helpers/wait.ts";
import type { Socket } from "bun";

let child: Child;
beforeAll(async () => {
  child = await spawnServer(["--no-policy"]);
});
afterAll(async () => {
  await child.stop();
});

test("a client that stops reading while the target floods: server RSS grows < 64 MiB", async () => {
  // A target that writes as fast as the relay will take it, and counts what it got rid of.
  let pushed = 0;
  const chunk = new Uint8Array(256 * 1024).fill(0x5a);
  const LIMIT = 1024 * 1024 * 1024;
  const pump = (s: Socket<undefined>) => {
    while (pushed < LIMIT) {
      const n = s.write(chunk);
      if (n <= 0) return;
      pushed += n;
      if (n < chunk.length) return;
    }
  };
  const flood = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: pump, drain: pump, data() {}, error() {} } });
  const ws = await rawWebSocket(child.port);
  ws.pause(); // never read what the server sends
  const before = child.rssBytes();
  ws.sendBinary(encodeBinaryRequest({ op: "connect", id: 1, addr: "127.0.0.1", port: flood.port }));
  const stalledAt = await waitForSteady(() => pushed, { what: "the flood to stall", quietMs: 500, timeoutMs: 20_000 });
  await Bun.sleep(1000); // stalled means it stays stalled: 1 s more in which it must not move on
  const growth = child.rssBytes() - before;
  // The target is stalled (kernel buffers plus the server's watermark), not streaming into RAM.
  expect(pushed - stalledAt).toBeLessThan(1024 * 1024);
  expect(pushed).toBeLessThan(64 * 1024 * 1024);
  expect(growth).toBeLessThan(64 * 1024 * 1024);
  // And it flows again once the client reads.
  ws.resume();
  await waitFor(() => pushed > stalledAt + 32 * 1024 * 1024, { what: "32 MiB more once the client reads", timeoutMs: 20_000, detail: () => pushed - stalledAt });
  expect(pushed).toBeGreaterThan(stalledAt + 32 * 1024 * 1024);
  ws.close();
  flood.stop(true);
}, 40_000);

test("40 targets flooding one session that stops reading: all held, RSS grows < 64 MiB", async () => {
  let pushed = 0;
  const chunk = new Uint8Array(256 * 1024).fill(0x33);
  const pump = (s: Socket<undefined>) => {
    for (;;) {
      const n = s.write(chunk);
      if (n <= 0) return;
      pushed += n;
      if (n < chunk.length || pushed > 2 * 1024 * 1024 * 1024) return;
    }
  };
  const flood = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: pump, drain: pump, data() {}, error() {} } });
  const ws = await rawWebSocket(child.port);
  ws.pause();
  const before = child.rssBytes();
  for (let id = 1; id <= 40; id++) ws.sendBinary(encodeBinaryRequest({ op: "connect", id, addr: "127.0.0.1", port: flood.port }));
  const stalledAt = await waitForSteady(() => pushed, { what: "the 40 floods to stall", quietMs: 500, timeoutMs: 20_000 });
  await Bun.sleep(1000); // stalled means it stays stalled: 1 s more in which it must not move on
  // Kernel socket buffers take a few MiB per connection; the relay itself holds little.
  expect(pushed - stalledAt).toBeLessThan(4 * 1024 * 1024);
  expect(child.rssBytes() - before).toBeLessThan(64 * 1024 * 1024);
  ws.resume(); // the session was not closed for it: it flows again
  await waitFor(() => pushed > stalledAt + 64 * 1024 * 1024, { what: "64 MiB more once the client reads", timeoutMs: 20_000, detail: () => pushed - stalledAt });
  expect(pushed).toBeGreaterThan(stalledAt + 64 * 1024 * 1024);
  ws.close();
  flood.stop(true);
}, 40_000);

test("a target that stops reading while the client floods: ELIMIT on that stream only", async () => {
  const stuck = sinkServer({ paused: true });
  const echo = echoServer();
  const c = await TestClient.open(child.wsUrl, "binary");
  expect((await c.connect(1, "127.0.0.1", stuck.port)).ev).toBe("connected");
  expect((await c.connect(2, "127.0.0.1", echo.port)).ev).toBe("connected");
  const chunk = new Uint8Array(64 * 1024);
  let err: { ev: string; code?: string; msg?: string } | null = null;
  void c.next(1, 60_000).then((e) => (err = e as typeof err));
  let sent = 0;
  while (!err && sent < 256 * 1024 * 1024) {
    c.send({ op: "send", id: 1, data: chunk });
    sent += chunk.length;
    if (c.ws.bufferedAmount > 4 * 1024 * 1024) await waitFor(() => err || c.ws.bufferedAmount <= 4 * 1024 * 1024, { what: "the WebSocket's send buffer to drain", timeoutMs: 30_000 });
  }
  await waitFor(() => err, { what: "ELIMIT on the stream whose target stopped reading", detail: () => `${sent} bytes sent` });
  expect(err).not.toBeNull();
  expect(err!.ev).toBe("error");
  expect(err!.code).toBe("ELIMIT");
  expect(err!.msg).toContain("stream_buffer_bytes");
  // The other stream on the same session keeps flowing.
  c.send({ op: "send", id: 2, data: new TextEncoder().encode("alive") });
  await c.waitBytes(2, 5);
  expect(new TextDecoder().decode(c.received(2))).toBe("alive");
  c.close();
  stuck.stop();
  echo.stop();
}, 60_000);
