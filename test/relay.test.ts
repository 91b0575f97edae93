// End-to-end relay through a real wasmnet server to real TCP targets on loopback.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { echoTransfer, TestClient } from "./helpers/client.ts";
import { startServer } from "./helpers/server.ts";
import { echoServer, makePayload, sha256, sourceServer } from "./helpers/targets.ts";

let srv: Awaited<ReturnType<typeof startServer>>;
const echo = echoServer();
const echo6 = echoServer("::1");

beforeAll(async () => {
  srv = await startServer({ noPolicy: true });
});
afterAll(async () => {
  await srv.stop();
  echo.stop();
  echo6.stop();
});

describe.each(["json", "binary"] as const)("%s framing", (framing) => {
  test("echo through 127.0.0.1", async () => {
    const c = await TestClient.open(srv.wsUrl, framing);
    expect(await c.connect(1, "127.0.0.1", echo.port)).toEqual({ ev: "connected", id: 1 });
    const msg = new TextEncoder().encode("hello wasmnet");
    c.send({ op: "send", id: 1, data: msg });
    await c.waitBytes(1, msg.length);
    expect(new TextDecoder().decode(c.received(1))).toBe("hello wasmnet");
    c.send({ op: "close", id: 1 });
    expect(await c.next(1)).toEqual({ ev: "closed", id: 1 });
    c.close();
  });

  test("echo through ::1", async () => {
    const c = await TestClient.open(srv.wsUrl, framing);
    expect((await c.connect(7, "::1", echo6.port)).ev).toBe("connected");
    c.send({ op: "send", id: 7, data: new Uint8Array([1, 2, 3]) });
    await c.waitBytes(7, 3);
    expect([...c.received(7)]).toEqual([1, 2, 3]);
    c.close();
  });

  test("send before connected is queued and delivered", async () => {
    const c = await TestClient.open(srv.wsUrl, framing);
    c.send({ op: "connect", id: 1, addr: "127.0.0.1", port: echo.port });
    c.send({ op: "send", id: 1, data: new TextEncoder().encode("early") });
    expect((await c.next(1)).ev).toBe("connected");
    await c.waitBytes(1, 5);
    expect(new TextDecoder().decode(c.received(1))).toBe("early");
    c.close();
  });

  test("target closing gives one closed", async () => {
    const src = sourceServer(1000);
    const c = await TestClient.open(srv.wsUrl, framing);
    expect((await c.connect(3, "127.0.0.1", src.port)).ev).toBe("connected");
    expect(await c.next(3)).toEqual({ ev: "closed", id: 3 });
    expect(c.receivedBytes(3)).toBe(1000);
    await Bun.sleep(50); // exactly one closed: give a stray event 50 ms to (wrongly) show up
    expect(c.events.filter((e) => e.id === 3)).toEqual([]);
    c.close();
    src.stop();
  });
});

test("both framings mixed in one session; replies follow the latest request's framing", async () => {
  const c = await TestClient.open(srv.wsUrl, "json");
  expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
  c.framing = "binary";
  c.send({ op: "connect", id: 2, addr: "127.0.0.1", port: echo.port });
  const rawFrames: string[] = [];
  c.ws.addEventListener("message", (m) => rawFrames.push(typeof m.data === "string" ? "text" : "binary"));
  expect((await c.next(2)).ev).toBe("connected");
  expect(rawFrames).toEqual(["binary"]);
  c.send({ op: "send", id: 1, data: new Uint8Array([9]) });
  await c.waitBytes(1, 1);
  c.framing = "json";
  c.send({ op: "send", id: 2, data: new Uint8Array([8]) });
  await c.waitBytes(2, 1);
  expect(rawFrames.slice(-1)).toEqual(["text"]);
  c.close();
});

test("100 parallel streams in one session, distinct payloads intact", async () => {
  const c = await TestClient.open(srv.wsUrl, "binary");
  const N = 100;
  const payloads = Array.from({ length: N }, (_, i) => makePayload(20_000 + i * 13, i + 1));
  await Promise.all(payloads.map((_, i) => c.connect(i + 1, "127.0.0.1", echo.port)));
  payloads.forEach((p, i) => {
    for (let o = 0; o < p.length; o += 4096) c.send({ op: "send", id: i + 1, data: p.subarray(o, o + 4096) });
  });
  await Promise.all(payloads.map((p, i) => c.waitBytes(i + 1, p.length)));
  payloads.forEach((p, i) => expect(sha256(c.received(i + 1))).toBe(sha256(p)));
  c.close();
});

test("64 MiB each way intact", async () => {
  const c = await TestClient.open(srv.wsUrl, "binary");
  c.keepEvents = false;
  expect(await c.connect(1, "127.0.0.1", echo.port)).toEqual({ ev: "connected", id: 1 });
  const total = 64 * 1024 * 1024;
  const chunk = makePayload(64 * 1024, 3);
  const r = await echoTransfer(c, 1, total, () => chunk);
  expect(r.got).toBe(total);
  expect(r.down).toBe(r.up);
  c.close();
}, 120_000);
