// bind / listen / accepted end to end: the test dials the relay's listeners on loopback.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SERVER_ID_BASE } from "../src/constants.ts";
import { parsePolicy } from "../src/policy/load.ts";
import type { Event } from "../src/protocol/messages.ts";
import { TestClient } from "./helpers/client.ts";
import { startServer } from "./helpers/server.ts";
import { echoServer, makePayload, sha256 } from "./helpers/targets.ts";
import { dial, refused } from "./helpers/dial.ts";
import { waitFor } from "./helpers/wait.ts";

type Accepted = Extract<Event, { ev: "accepted" }>;

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

let srv: Awaited<ReturnType<typeof startServer>>;
beforeAll(async () => {
  srv = await startServer({ noPolicy: true });
});
afterAll(async () => {
  await srv.stop();
});

async function bindListener(c: TestClient, id: number, addr = "127.0.0.1", port = 0): Promise<number> {
  c.send({ op: "bind", id, addr, port });
  const e = await c.next(id);
  expect(e.ev).toBe("listening");
  return (e as { port: number }).port;
}

describe.each(["json", "binary"] as const)("%s framing", (framing) => {
  test("bind port 0 → a real port; an inbound connection is accepted and echoes both ways", async () => {
    const c = await TestClient.open(srv.wsUrl, framing);
    const port = await bindListener(c, 1);
    expect(port).toBeGreaterThan(0);
    const d = await dial(port);
    const acc = (await c.next(1)) as Accepted;
    expect(acc.ev).toBe("accepted");
    expect(acc.connId).toBeGreaterThanOrEqual(SERVER_ID_BASE);
    expect(acc.connId).toBeLessThanOrEqual(Number.MAX_SAFE_INTEGER);
    expect(acc.remote).toBe(`127.0.0.1:${d.localPort}`);
    d.socket.write("from outside");
    await c.waitBytes(acc.connId, 12);
    expect(dec(c.received(acc.connId))).toBe("from outside");
    c.send({ op: "send", id: acc.connId, data: enc("from the browser") });
    await waitFor(() => d.text() === "from the browser", { what: '"from the browser" at the dialer', detail: d.text });
    // The remote side closes: one closed (version 1).
    d.socket.end();
    expect(await c.next(acc.connId)).toEqual({ ev: "closed", id: acc.connId });
    c.close();
  });

  test("listen answers listening again with the same port", async () => {
    const c = await TestClient.open(srv.wsUrl, framing);
    const port = await bindListener(c, 4);
    c.send({ op: "listen", id: 4, backlog: 16 });
    expect(await c.next(4)).toEqual({ ev: "listening", id: 4, port });
    c.send({ op: "listen", id: 99, backlog: 16 });
    expect(await c.next(99)).toMatchObject({ ev: "error", code: "EBADID" });
    c.close();
  });
});

test("two simultaneous inbound connections get distinct ids and separate data", async () => {
  const c = await TestClient.open(srv.wsUrl, "binary");
  const port = await bindListener(c, 1);
  const d1 = await dial(port);
  const a1 = (await c.next(1)) as Accepted;
  const d2 = await dial(port);
  const a2 = (await c.next(1)) as Accepted;
  expect(a1.connId).not.toBe(a2.connId);
  expect(new Set([a1.remote, a2.remote])).toEqual(new Set([`127.0.0.1:${d1.localPort}`, `127.0.0.1:${d2.localPort}`]));
  const byRemote = new Map([
    [a1.remote, a1.connId],
    [a2.remote, a2.connId],
  ]);
  const id1 = byRemote.get(`127.0.0.1:${d1.localPort}`)!;
  const id2 = byRemote.get(`127.0.0.1:${d2.localPort}`)!;
  const p1 = makePayload(300_000, 11);
  const p2 = makePayload(200_000, 12);
  d1.socket.write(p1);
  d2.socket.write(p2);
  await c.waitBytes(id1, p1.length);
  await c.waitBytes(id2, p2.length);
  expect(sha256(c.received(id1))).toBe(sha256(p1));
  expect(sha256(c.received(id2))).toBe(sha256(p2));
  c.send({ op: "send", id: id2, data: enc("two") });
  c.send({ op: "send", id: id1, data: enc("one") });
  await waitFor(() => d1.text() === "one" && d2.text() === "two", { what: '"one" and "two" at their dialers', detail: () => [d1.text(), d2.text()] });
  c.close();
});

test("closing the listener refuses new connections; accepted ones keep working", async () => {
  const c = await TestClient.open(srv.wsUrl);
  const port = await bindListener(c, 1);
  const d = await dial(port);
  const acc = (await c.next(1)) as Accepted;
  c.send({ op: "close", id: 1 });
  expect(await c.next(1)).toEqual({ ev: "closed", id: 1 });
  expect(await refused(port)).toBe(true);
  d.socket.write("still here");
  await c.waitBytes(acc.connId, 10);
  c.send({ op: "send", id: acc.connId, data: enc("me too") });
  await waitFor(() => d.text() === "me too", { what: '"me too" at the dialer', detail: d.text });
  c.send({ op: "close", id: acc.connId });
  expect(await c.next(acc.connId)).toEqual({ ev: "closed", id: acc.connId });
  await waitFor(() => d.closed || d.ended, "the dialer to see the close");
  await Bun.sleep(50); // no late accept may follow: give one 50 ms to (wrongly) show up
  expect(c.events.filter((e) => e.ev === "accepted")).toEqual([]);
  c.close();
});

test("the WebSocket closing stops its listeners", async () => {
  const c = await TestClient.open(srv.wsUrl);
  const port = await bindListener(c, 1);
  const d = await dial(port);
  await c.next(1);
  c.close();
  await waitFor(() => d.closed || d.ended, "the dialer to see the close");
  // The listener stops with the session; its port refuses once it has.
  await waitFor(() => refused(port), `port ${port} to refuse connections`);
});

test("a taken port is EADDRINUSE", async () => {
  const taken = echoServer();
  try {
    const c = await TestClient.open(srv.wsUrl);
    c.send({ op: "bind", id: 1, addr: "127.0.0.1", port: taken.port });
    const e = await c.next(1);
    expect(e).toMatchObject({ ev: "error", id: 1, code: "EADDRINUSE" });
    expect((e as { msg: string }).msg).toContain(String(taken.port));
    // The id is free for another try.
    expect(await bindListener(c, 1)).toBeGreaterThan(0);
    c.close();
  } finally {
    taken.stop();
  }
});

test("IPv6 loopback listener reports the remote as [::1]:port", async () => {
  const c = await TestClient.open(srv.wsUrl);
  const port = await bindListener(c, 1, "::1");
  const d = await dial(port, "::1");
  const acc = (await c.next(1)) as Accepted;
  expect(acc.remote).toBe(`[::1]:${d.localPort}`);
  c.close();
});

describe("with a policy (bind_ports 3000-9999, loopback allowed)", () => {
  let guarded: Awaited<ReturnType<typeof startServer>>;
  beforeAll(async () => {
    guarded = await startServer({
      policy: parsePolicy(`[network]\ndeny = []\nallow = ["*"]\nmax_connections = 2\n`, "inbound-test.toml"),
    });
  });
  afterAll(async () => {
    await guarded.stop();
  });

  test("a port outside bind_ports is denied; port 0 picks one inside", async () => {
    const c = await TestClient.open(guarded.wsUrl);
    for (const [id, port] of [
      [1, 2999],
      [2, 10000],
      [3, 80],
    ] as const) {
      c.send({ op: "bind", id, addr: "127.0.0.1", port });
      const e = await c.next(id);
      expect(e.ev).toBe("denied");
      expect((e as { msg: string }).msg).toContain("bind_ports");
    }
    const port = await bindListener(c, 4);
    expect(port).toBeGreaterThanOrEqual(3000);
    expect(port).toBeLessThanOrEqual(9999);
    const d = await dial(port);
    expect((await c.next(4)).ev).toBe("accepted");
    d.socket.end();
    c.close();
  });

  test("a non-loopback, non-wildcard bind address is denied", async () => {
    const c = await TestClient.open(guarded.wsUrl);
    c.send({ op: "bind", id: 1, addr: "192.0.2.1", port: 0 });
    expect((await c.next(1)).ev).toBe("denied");
    c.close();
  });

  test("listeners and accepted connections count toward max_connections", async () => {
    const c = await TestClient.open(guarded.wsUrl);
    const port = await bindListener(c, 1);
    await bindListener(c, 2);
    c.send({ op: "bind", id: 3, addr: "127.0.0.1", port: 0 });
    expect(await c.next(3)).toMatchObject({ ev: "error", id: 3, code: "ELIMIT" });
    c.send({ op: "connect", id: 4, addr: "127.0.0.1", port });
    expect(await c.next(4)).toMatchObject({ ev: "error", id: 4, code: "ELIMIT" });
    // Full: an inbound connection is refused rather than accepted over the limit.
    expect(await refused(port)).toBe(true);
    expect(c.events.filter((e) => e.ev === "accepted")).toEqual([]);
    // Closing one listener makes room for one accepted connection.
    c.send({ op: "close", id: 2 });
    expect((await c.next(2)).ev).toBe("closed");
    const d = await dial(port);
    const acc = (await c.next(1)) as Accepted;
    expect(acc.ev).toBe("accepted");
    d.socket.write("ok");
    await c.waitBytes(acc.connId, 2);
    c.close();
  });
});

test("server-assigned ids skip ids the client already uses, and are then in use themselves", async () => {
  const echo = echoServer();
  try {
    const c = await TestClient.open(srv.wsUrl, "binary");
    // The client is free to use ids in the server's range; the server must not collide.
    for (const id of [SERVER_ID_BASE, SERVER_ID_BASE + 1]) expect((await c.connect(id, "127.0.0.1", echo.port)).ev).toBe("connected");
    const port = await bindListener(c, 1);
    const d = await dial(port);
    const acc = (await c.next(1)) as Accepted;
    expect([SERVER_ID_BASE, SERVER_ID_BASE + 1]).not.toContain(acc.connId);
    c.send({ op: "connect", id: acc.connId, addr: "127.0.0.1", port: echo.port });
    expect(await c.next(acc.connId)).toMatchObject({ ev: "error", code: "EIDINUSE" });
    d.socket.write("x");
    await c.waitBytes(acc.connId, 1);
    c.send({ op: "send", id: SERVER_ID_BASE, data: enc("y") });
    await c.waitBytes(SERVER_ID_BASE, 1);
    expect(c.receivedBytes(acc.connId)).toBe(1);
    c.close();
  } finally {
    echo.stop();
  }
});
