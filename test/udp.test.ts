// UDP relay end to end: real UDP peers on loopback (IPv4 and IPv6), per-datagram policy.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parsePolicy } from "../src/policy/load.ts";
import type { Event } from "../src/protocol/messages.ts";
import { TestClient } from "./helpers/client.ts";
import { startServer } from "./helpers/server.ts";
import { makePayload, udpPeer, type Peer } from "./helpers/targets.ts";
import { waitFor } from "./helpers/wait.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
type DataFrom = Extract<Event, { ev: "data_from" }>;

let srv: Awaited<ReturnType<typeof startServer>>;
let echo4: Peer;
let echo6: Peer;
let echo4b: Peer;

beforeAll(async () => {
  srv = await startServer({ noPolicy: true });
  echo4 = await udpPeer("127.0.0.1");
  echo4b = await udpPeer("127.0.0.1");
  echo6 = await udpPeer("::1");
});
afterAll(async () => {
  await srv.stop();
  for (const p of [echo4, echo4b, echo6]) p.stop();
});

describe.each(["json", "binary"] as const)("%s framing", (framing) => {
  test("echo over IPv4", async () => {
    const c = await TestClient.open(srv.wsUrl, framing);
    c.send({ op: "connect_udp", id: 1, addr: "127.0.0.1", port: echo4.port });
    const bound = await c.next(1);
    expect(bound.ev).toBe("udp_bound");
    expect((bound as { port: number }).port).toBeGreaterThan(0);
    c.send({ op: "send", id: 1, data: enc("ping4") });
    const e = (await c.wait((e) => e.ev === "data_from" && e.id === 1)) as DataFrom;
    expect(dec(e.data)).toBe("ping4");
    expect(e.addr).toBe("127.0.0.1");
    expect(e.port).toBe(echo4.port);
    // The peer saw the relay's socket at the port udp_bound announced.
    expect(echo4.got.at(-1)!.port).toBe((bound as { port: number }).port);
    c.close();
  });

  test("echo over IPv6", async () => {
    const c = await TestClient.open(srv.wsUrl, framing);
    c.send({ op: "connect_udp", id: 2, addr: "::1", port: echo6.port });
    expect((await c.next(2)).ev).toBe("udp_bound");
    c.send({ op: "send", id: 2, data: enc("ping6") });
    const e = (await c.wait((e) => e.ev === "data_from" && e.id === 2)) as DataFrom;
    expect(dec(e.data)).toBe("ping6");
    expect(e.addr).toBe("::1");
    expect(e.port).toBe(echo6.port);
    c.close();
  });
});

test("send_to two other peers: both replies arrive, with canonical addresses and ports", async () => {
  const c = await TestClient.open(srv.wsUrl, "binary");
  c.send({ op: "connect_udp", id: 1, addr: "127.0.0.1", port: echo4.port });
  expect((await c.next(1)).ev).toBe("udp_bound");
  c.send({ op: "send_to", id: 1, addr: "127.0.0.1", port: echo4b.port, data: enc("to-b") });
  c.send({ op: "send_to", id: 1, addr: "::1", port: echo6.port, data: enc("to-6") });
  // A non-canonical spelling of an IPv4 address is canonicalised before it is used and reported.
  c.send({ op: "send_to", id: 1, addr: "::ffff:127.0.0.1", port: echo4.port, data: enc("to-a") });
  const replies: DataFrom[] = [];
  for (let i = 0; i < 3; i++) replies.push((await c.wait((e) => e.ev === "data_from" && e.id === 1)) as DataFrom);
  const seen = replies.map((r) => `${dec(r.data)} ${r.addr} ${r.port}`).sort();
  expect(seen).toEqual([`to-6 ::1 ${echo6.port}`, `to-a 127.0.0.1 ${echo4.port}`, `to-b 127.0.0.1 ${echo4b.port}`].sort());
  c.close();
});

test("a datagram from a peer never sent to is not delivered; a known peer's is", async () => {
  const stranger = await udpPeer("127.0.0.1", false);
  const known = await udpPeer("127.0.0.1", false);
  try {
    const c = await TestClient.open(srv.wsUrl);
    c.send({ op: "connect_udp", id: 1, addr: "127.0.0.1", port: known.port });
    const relayPort = ((await c.next(1)) as { port: number }).port;
    c.send({ op: "send", id: 1, data: enc("hi") });
    await waitFor(() => known.got.length > 0, "the known peer to get our datagram");
    stranger.socket.send(enc("unsolicited"), relayPort, "127.0.0.1");
    // Same address, other port: still a stranger.
    stranger.socket.send(enc("also unsolicited"), relayPort, "127.0.0.1");
    await Bun.sleep(100); // the strangers' datagrams must be dropped: give them 100 ms to (wrongly) get through first
    known.socket.send(enc("reply"), relayPort, "127.0.0.1");
    const e = (await c.wait((e) => e.ev === "data_from")) as DataFrom;
    expect(dec(e.data)).toBe("reply");
    await Bun.sleep(50); // give a stranger's datagram 50 ms more to (wrongly) show up
    expect(c.events.filter((e) => e.ev === "data_from")).toEqual([]);
    c.close();
  } finally {
    stranger.stop();
    known.stop();
  }
});

test("oversize datagram (65,508 bytes) is EBADREQ and not sent; 65,507 bytes go through", async () => {
  const sink = await udpPeer("127.0.0.1", false);
  try {
    const c = await TestClient.open(srv.wsUrl, "binary");
    c.send({ op: "connect_udp", id: 1, addr: "127.0.0.1", port: sink.port });
    expect((await c.next(1)).ev).toBe("udp_bound");
    c.send({ op: "send", id: 1, data: makePayload(65_508) });
    const e = await c.next(1);
    expect(e).toMatchObject({ ev: "error", id: 1, code: "EBADREQ" });
    c.send({ op: "send_to", id: 1, addr: "127.0.0.1", port: sink.port, data: makePayload(65_508) });
    expect(await c.next(1)).toMatchObject({ ev: "error", id: 1, code: "EBADREQ" });
    c.send({ op: "send", id: 1, data: makePayload(65_507, 5) });
    await waitFor(() => sink.got.length > 0, "the 65,507-byte datagram at the peer");
    expect(sink.got.map((g) => g.data.length)).toEqual([65_507]);
    c.close();
  } finally {
    sink.stop();
  }
});

test("send_to a destination the policy denies: denied, nothing sent; allowed peer still works", async () => {
  const a = await udpPeer("127.0.0.1");
  const b = await udpPeer("127.0.0.1");
  const policy = parsePolicy(`[network]\ndeny = []\nallow = ["127.0.0.1:${a.port}"]\n`, "udp-test.toml");
  const s = await startServer({ policy });
  try {
    const c = await TestClient.open(s.wsUrl);
    c.send({ op: "connect_udp", id: 1, addr: "127.0.0.1", port: a.port });
    expect((await c.next(1)).ev).toBe("udp_bound");
    c.send({ op: "send_to", id: 1, addr: "127.0.0.1", port: b.port, data: enc("must not arrive") });
    const d = await c.next(1);
    expect(d.ev).toBe("denied");
    expect((d as { msg: string }).msg).toContain(`127.0.0.1:${b.port}`);
    // The same socket still reaches the allowed peer.
    c.send({ op: "send", id: 1, data: enc("allowed") });
    const e = (await c.wait((e) => e.ev === "data_from")) as DataFrom;
    expect(dec(e.data)).toBe("allowed");
    expect(e.port).toBe(a.port);
    // connect_udp straight at the denied peer is denied too.
    c.send({ op: "connect_udp", id: 2, addr: "127.0.0.1", port: b.port });
    expect((await c.next(2)).ev).toBe("denied");
    await Bun.sleep(50); // nothing may reach the denied peer: give a stray datagram 50 ms to (wrongly) arrive
    expect(b.got).toEqual([]);
    c.close();
  } finally {
    await s.stop();
    a.stop();
    b.stop();
  }
});

test("send and send_to on unknown ids are EBADID", async () => {
  const c = await TestClient.open(srv.wsUrl);
  c.send({ op: "send_to", id: 9, addr: "127.0.0.1", port: echo4.port, data: enc("x") });
  expect(await c.next(9)).toMatchObject({ ev: "error", code: "EBADID" });
  c.close();
});

test("a refused datagram (dead port) does not lose the next one to a live peer", async () => {
  const dead = await udpPeer("127.0.0.1", false);
  const deadPort = dead.port;
  dead.stop(); // now nothing listens there: the kernel answers with ICMP port unreachable
  const c = await TestClient.open(srv.wsUrl, "binary");
  c.send({ op: "connect_udp", id: 1, addr: "127.0.0.1", port: echo4.port });
  expect((await c.next(1)).ev).toBe("udp_bound");
  for (let i = 0; i < 5; i++) {
    c.send({ op: "send_to", id: 1, addr: "127.0.0.1", port: deadPort, data: enc(`dead ${i}`) });
    c.send({ op: "send", id: 1, data: enc(`live ${i}`) });
    const e = (await c.wait((e) => e.ev === "data_from" && e.id === 1, 3000, `reply ${i}`)) as DataFrom;
    expect(dec(e.data)).toBe(`live ${i}`);
  }
  expect(c.events.filter((e) => e.ev === "error")).toEqual([]);
  c.close();
});

test("connect_udp and send_to by name go to the resolved address", async () => {
  const { dnsServer } = await import("./helpers/dns-server.ts");
  const { dnsServerResolver } = await import("../src/net/resolve.ts");
  const dns = await dnsServer({ "echo4.test": ["127.0.0.1"], "echo6.test": ["::1"] });
  const s = await startServer({ noPolicy: true, resolver: dnsServerResolver([dns.address]) });
  try {
    const c = await TestClient.open(s.wsUrl);
    c.send({ op: "connect_udp", id: 1, addr: "echo4.test", port: echo4.port });
    expect((await c.next(1)).ev).toBe("udp_bound");
    c.send({ op: "send", id: 1, data: enc("by name") });
    const a = (await c.wait((e) => e.ev === "data_from")) as DataFrom;
    expect([dec(a.data), a.addr, a.port]).toEqual(["by name", "127.0.0.1", echo4.port]);
    c.send({ op: "send_to", id: 1, addr: "echo6.test", port: echo6.port, data: enc("v6 by name") });
    const b = (await c.wait((e) => e.ev === "data_from")) as DataFrom;
    expect([dec(b.data), b.addr, b.port]).toEqual(["v6 by name", "::1", echo6.port]);
    c.send({ op: "send_to", id: 1, addr: "nowhere.test", port: echo6.port, data: enc("x") });
    expect(await c.next(1)).toMatchObject({ ev: "error", code: "ENOTFOUND" });
    c.close();
  } finally {
    await s.stop();
    dns.stop();
  }
});

test("close on a UDP socket: closed, then its peer's datagrams are not delivered and the id is unknown", async () => {
  const peer = await udpPeer("127.0.0.1", false);
  try {
    const c = await TestClient.open(srv.wsUrl);
    c.send({ op: "connect_udp", id: 1, addr: "127.0.0.1", port: peer.port });
    const relayPort = ((await c.next(1)) as { port: number }).port;
    c.send({ op: "send", id: 1, data: enc("hi") });
    await waitFor(() => peer.got.length > 0, "the peer to get our datagram");
    c.send({ op: "close", id: 1 });
    expect(await c.next(1)).toEqual({ ev: "closed", id: 1 });
    peer.socket.send(enc("late"), relayPort, "127.0.0.1");
    c.send({ op: "send", id: 1, data: enc("again") });
    expect(await c.next(1)).toMatchObject({ ev: "error", code: "EBADID" });
    await Bun.sleep(50); // the peer's late datagram must not be delivered: give it 50 ms to (wrongly) show up
    expect(c.events.filter((e) => e.ev === "data_from")).toEqual([]);
    expect(peer.got.length).toBe(1);
    c.close();
  } finally {
    peer.stop();
  }
});

test("close while connect_udp is still being set up: one closed, nothing bound afterwards", async () => {
  // A resolver that answers only when told keeps the open pending while the close arrives.
  let asked = false;
  let answered = false;
  let release!: () => void;
  const answer = new Promise<void>((r) => (release = r));
  const srv = await startServer({
    noPolicy: true,
    resolver: async () => {
      asked = true;
      await answer;
      answered = true;
      return ["127.0.0.1"];
    },
  });
  const c = await TestClient.open(srv.wsUrl);
  c.send({ op: "connect_udp", id: 3, addr: "slow.test", port: 9 });
  await waitFor(() => asked, "the resolver to be asked");
  c.send({ op: "close", id: 3 });
  expect(await c.next(3)).toEqual({ ev: "closed", id: 3 });
  release();
  await waitFor(() => answered, "the resolver to answer");
  await Bun.sleep(100); // nothing may follow closed: give a late udp_bound 100 ms to (wrongly) show up
  expect(c.events.filter((e) => e.id === 3)).toEqual([]);
  expect(srv.handler.ctx.metrics.sockets.udp).toBe(0);
  // The id is free again.
  c.send({ op: "connect_udp", id: 3, addr: "127.0.0.1", port: 9 });
  expect((await c.next(3)).ev).toBe("udp_bound");
  c.close();
  await srv.stop();
});
