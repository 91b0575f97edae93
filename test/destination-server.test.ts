// Destination rules end to end (docs/protocol.md#destinations-and-the-policy): names are resolved once by the server (here by an
// injected resolver), every answer is checked, and the connection goes to an address that
// passed — never to a second look-up. Targets count what reaches them.
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { parsePolicy } from "../src/policy/load.ts";
import { TestClient } from "./helpers/client.ts";
import { startServer } from "./helpers/server.ts";
import { waitFor } from "./helpers/wait.ts";

/** A TCP target on `host`:`port` that counts accepts and echoes. */
function countingTarget(host: string, port = 0) {
  const t = { port: 0, accepted: 0, stop: () => {} };
  const l = Bun.listen({
    hostname: host,
    port,
    socket: {
      open() {
        t.accepted++;
      },
      data(s: Socket<undefined>, d) {
        s.write(d);
      },
      error() {},
    },
  });
  t.port = l.port;
  t.stop = () => l.stop(true);
  return t;
}

/** The same port on 127.0.0.1 (allowed) and 127.0.0.2 (denied by the test policy). */
function twoTargets() {
  for (let attempt = 0; attempt < 20; attempt++) {
    const good = countingTarget("127.0.0.1");
    try {
      const bad = countingTarget("127.0.0.2", good.port);
      return { good, bad, port: good.port };
    } catch {
      good.stop();
    }
  }
  throw new Error("no port free on both 127.0.0.1 and 127.0.0.2");
}

async function udpTarget(host: string, port = 0) {
  const t = { port: 0, received: 0, close: () => {} };
  const s = await Bun.udpSocket({
    hostname: host,
    port,
    socket: {
      data(sock, buf, rport, raddr) {
        t.received++;
        sock.send(buf, rport, raddr);
      },
    },
  });
  t.port = s.port;
  t.close = () => s.close();
  return t;
}

const { good, bad, port } = twoTargets();
let cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});
afterAll(() => {
  good.stop();
  bad.stop();
});

/** Names → answers; a function answer is called on every look-up. Every look-up is recorded. */
function resolverFor(table: Record<string, string[] | (() => string[])>) {
  const asked: string[] = [];
  const resolver = async (name: string) => {
    asked.push(name);
    const a = table[name];
    if (a === undefined) throw Object.assign(new Error(`${name} not found`), { code: "ENOTFOUND" });
    return typeof a === "function" ? a() : a;
  };
  return { resolver, asked };
}

async function setup(policyToml: string | null, table: Record<string, string[] | (() => string[])>) {
  const { resolver, asked } = resolverFor(table);
  const policy = policyToml === null ? undefined : parsePolicy(policyToml, "destination.test.toml");
  const srv = await startServer({ policy, resolver });
  const c = await TestClient.open(srv.wsUrl);
  cleanup.push(() => srv.stop(), () => c.close());
  return { srv, c, asked };
}

const PRIVATE_DENIED = `[network]\ndeny = ["10.0.0.0/8", "192.168.0.0/16"]\nallow = ["*"]\n`;
const DENY_127_0_0_2 = `[network]\ndeny = ["127.0.0.2"]\nallow = ["*"]\n`;

describe("names through the server", () => {
  test("default policy: names resolving to private or loopback addresses are denied", async () => {
    const { c, srv } = await setup(null, { "intranet.test": ["10.0.0.1"], "home.test": ["192.168.1.1"], "loop.test": ["127.0.0.1"] });
    for (const [i, name] of ["intranet.test", "home.test", "loop.test"].entries()) {
      expect(await c.connect(i + 1, name, port)).toMatchObject({ ev: "denied", id: i + 1 });
    }
    expect(good.accepted).toBe(0);
    expect(srv.handler.ctx.metrics.denials.get("nonpublic")).toBe(3);
  });

  test("a private answer is denied, an allowed one connects to the address that passed", async () => {
    const before = good.accepted;
    const { c } = await setup(PRIVATE_DENIED, { "priv.test": ["10.0.0.1"], "ok.test": ["127.0.0.1"] });
    expect(await c.connect(1, "priv.test", port)).toMatchObject({ ev: "denied", id: 1 });
    expect(await c.connect(2, "ok.test", port)).toEqual({ ev: "connected", id: 2 });
    c.send({ op: "send", id: 2, data: new TextEncoder().encode("ping") });
    await c.waitBytes(2, 4);
    expect(good.accepted).toBe(before + 1);
    c.send({ op: "resolve", id: 3, name: "priv.test" });
    expect(await c.next(3)).toMatchObject({ ev: "denied" });
    c.send({ op: "resolve", id: 4, name: "ok.test" });
    expect(await c.next(4)).toEqual({ ev: "resolved", id: 4, addrs: ["127.0.0.1"] });
  });

  test("rebinding: answers flipping on every look-up never reach the denied address", async () => {
    const goodBefore = good.accepted;
    const badBefore = bad.accepted;
    let n = 0;
    const flip = () => (n++ % 2 === 0 ? ["127.0.0.1"] : ["127.0.0.2"]);
    const { c, asked } = await setup(DENY_127_0_0_2, { "flip.test": flip });
    let connected = 0;
    let denied = 0;
    for (let id = 1; id <= 12; id++) {
      const ev = await c.connect(id, "flip.test", port);
      if (ev.ev === "connected") {
        connected++;
        c.send({ op: "send", id, data: new TextEncoder().encode("x") });
        await c.waitBytes(id, 1);
      } else {
        expect(ev.ev).toBe("denied");
        denied++;
      }
    }
    // One look-up per connect: the check and the connection used the same answer.
    expect(asked.filter((a) => a === "flip.test").length).toBe(12);
    expect(connected).toBe(6);
    expect(denied).toBe(6);
    expect(good.accepted - goodBefore).toBe(6);
    expect(bad.accepted - badBefore).toBe(0);
  });

  test("rebinding over UDP: connect_udp and send_to never send to the denied address", async () => {
    const u1 = await udpTarget("127.0.0.1");
    const u2 = await udpTarget("127.0.0.2", u1.port);
    cleanup.push(() => u1.close(), () => u2.close());
    let n = 0;
    const { c } = await setup(DENY_127_0_0_2, { "flip.test": () => (n++ % 2 === 0 ? ["127.0.0.1"] : ["127.0.0.2"]) });
    c.send({ op: "connect_udp", id: 1, addr: "flip.test", port: u1.port });
    expect((await c.next(1)).ev).toBe("udp_bound");
    for (let i = 0; i < 6; i++) c.send({ op: "send_to", id: 1, addr: "flip.test", port: u1.port, data: new Uint8Array([i]) });
    for (let i = 0; i < 3; i++) expect(await c.next(1)).toMatchObject({ ev: "denied" });
    await waitFor(() => u1.received >= 3, { what: "the three allowed datagrams", detail: () => u1.received });
    await Bun.sleep(50); // nothing more may arrive: give a stray datagram 50 ms to (wrongly) show up
    expect(u1.received).toBe(3);
    expect(u2.received).toBe(0);
  });

  test("a mixed answer set connects only to an allowed address", async () => {
    const goodBefore = good.accepted;
    const badBefore = bad.accepted;
    const { c } = await setup(DENY_127_0_0_2, { "mixed.test": ["127.0.0.2", "127.0.0.1"], "allbad.test": ["127.0.0.2"] });
    for (let id = 1; id <= 5; id++) expect(await c.connect(id, "mixed.test", port)).toEqual({ ev: "connected", id });
    expect(await c.connect(6, "allbad.test", port)).toMatchObject({ ev: "denied", id: 6 });
    c.send({ op: "resolve", id: 7, name: "mixed.test" });
    expect(await c.next(7)).toEqual({ ev: "resolved", id: 7, addrs: ["127.0.0.1"] });
    await waitFor(() => good.accepted - goodBefore >= 5, { what: "the five connections at the allowed target", detail: () => good.accepted - goodBefore });
    await Bun.sleep(50); // none may reach the denied address: give a stray one 50 ms to (wrongly) arrive
    expect(good.accepted - goodBefore).toBe(5);
    expect(bad.accepted - badBefore).toBe(0);
  });
});

describe("hostile literals with the default policy", () => {
  const HOSTILE = ["::ffff:127.0.0.1", "0.0.0.0", "2130706433", "127.1", "localhost", "0x7f.1", "[::1]", "0177.0.0.1", "::1", "LOCALHOST.", "::ffff:7f00:1"];

  test.each(HOSTILE)("%s is denied for connect, connect_tls, connect_udp and resolve", async (addr) => {
    const before = good.accepted;
    // The resolver answers loopback for anything: a literal must never reach it, a name must be
    // refused by name before any look-up.
    const { c, asked } = await setup(null, { localhost: ["127.0.0.1"], "localhost.": ["127.0.0.1"] });
    expect(await c.connect(1, addr, port)).toMatchObject({ ev: "denied", id: 1 });
    expect(await c.connect(2, addr, port, "connect_tls")).toMatchObject({ ev: "denied", id: 2 });
    c.send({ op: "connect_udp", id: 3, addr, port });
    expect(await c.next(3)).toMatchObject({ ev: "denied", id: 3 });
    c.send({ op: "resolve", id: 4, name: addr });
    expect(await c.next(4)).toMatchObject({ ev: "denied", id: 4 });
    expect(asked).toEqual([]);
    expect(good.accepted).toBe(before);
  });

  test("send_to a hostile literal from a UDP socket aimed at an allowed peer is denied", async () => {
    const { c } = await setup(null, { "public.test": ["93.184.215.14"] });
    c.send({ op: "connect_udp", id: 1, addr: "public.test", port: 53 });
    expect((await c.next(1)).ev).toBe("udp_bound");
    for (const addr of HOSTILE) {
      c.send({ op: "send_to", id: 1, addr, port, data: new Uint8Array([1]) });
      expect(await c.next(1)).toMatchObject({ ev: "denied", id: 1 });
    }
  });
});

describe("resolve, then connect to the address (getaddrinfo + connect)", () => {
  const ALLOW_BY_NAME = `[network]\ndeny = ["*"]\nallow = ["good.test:${port}"]\n`;

  test("an address the session resolved from an allowed name is judged by that name", async () => {
    const before = good.accepted;
    const { c, srv } = await setup(ALLOW_BY_NAME, { "good.test": ["127.0.0.1"] });
    // Before the look-up the bare address matches no allow entry.
    expect(await c.connect(1, "127.0.0.1", port)).toMatchObject({ ev: "denied", id: 1 });
    c.send({ op: "resolve", id: 2, name: "good.test" });
    expect(await c.next(2)).toEqual({ ev: "resolved", id: 2, addrs: ["127.0.0.1"] });
    expect(await c.connect(3, "127.0.0.1", port)).toEqual({ ev: "connected", id: 3 });
    await waitFor(() => good.accepted > before, "the connection at the target");
    expect(good.accepted).toBe(before + 1);
    // The name's port qualifier still applies, and another session learned nothing.
    expect(await c.connect(4, "127.0.0.1", port + 1)).toMatchObject({ ev: "denied", id: 4 });
    const other = await TestClient.open(srv.wsUrl);
    cleanup.push(() => other.close());
    expect(await other.connect(1, "127.0.0.1", port)).toMatchObject({ ev: "denied", id: 1 });
  });

  test("address deny rules still win over the remembered name", async () => {
    const { c } = await setup(`[network]\ndeny = ["127.0.0.2"]\nallow = ["good.test"]\n`, { "good.test": ["127.0.0.1", "127.0.0.2"] });
    c.send({ op: "resolve", id: 1, name: "good.test" });
    expect(await c.next(1)).toEqual({ ev: "resolved", id: 1, addrs: ["127.0.0.1"] });
    expect(await c.connect(2, "127.0.0.2", port)).toMatchObject({ ev: "denied", id: 2 });
  });
});
