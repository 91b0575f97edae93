// The /posix/ endpoint at the protocol level: requests in Emscripten's wire format, built byte by
// byte in test/helpers/posix-client.ts, against a real server and real TCP/UDP targets on
// 127.0.0.1 (and ::1). Each call's reply layout and errno (the program's WASI numbers), calls
// answered out of order, malformed requests, the policy per call, bounded buffers, teardown.
// The real C program through the real stub is test/posix-e2e.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createToken } from "../src/auth/issue.ts";
import { parsePolicy } from "../src/policy/load.ts";
import { AF, AI, EAI, ERRNO, IPPROTO, MSG, POSIX_CALL, SHUT, SO, SOCK, SOL_SOCKET, TCP_OPT, minReplyBytes } from "../src/protocol/posix.ts";
import { createLogger } from "../src/log.ts";
import {
  PosixClient,
  addressOf,
  addrinfo,
  fam,
  int32,
  msg,
  optionValue,
  recvData,
  recvfromParts,
  req,
  sockaddr,
  timeval,
} from "./helpers/posix-client.ts";
import { rawWebSocket } from "./helpers/raw-ws.ts";
import { startServer } from "./helpers/server.ts";
import { spawnServer, type Child } from "./helpers/spawn.ts";
import { echoServer, freePort, makePayload, sha256, sinkServer, sourceServer, udpEcho, udpPeer, type Peer } from "./helpers/targets.ts";
import { waitFor, waitForSteady, withTimeout } from "./helpers/wait.ts";

const WINDOW = 64 * 1024; // stream_buffer_bytes of the test server: receive buffer and send window per socket
const te = new TextEncoder();
const td = new TextDecoder();

let srv: Awaited<ReturnType<typeof startServer>>;
let url: string;
const logLines: Array<Record<string, unknown>> = [];
const echo = echoServer();
const echo6 = echoServer("::1");
/** A live TCP target the policy refuses. */
const forbidden = echoServer();
let udpEchoPeer: Peer;
let udpEcho6: Peer;
/** A UDP peer the policy refuses. */
let udpForbidden: Peer;

const RESOLVE: Record<string, string[]> = {
  "echo.test": ["127.0.0.1"],
  "dual.test": ["127.0.0.1", "::1"],
  "mixed.test": ["10.1.2.3", "127.0.0.1"],
  "far.test": ["10.9.9.9"],
  "denied.test": ["127.0.0.1"],
};

beforeAll(async () => {
  udpEchoPeer = await udpEcho("127.0.0.1");
  udpEcho6 = await udpEcho("::1");
  udpForbidden = await udpPeer("127.0.0.1", false);
  const policy = parsePolicy(
    `[network]
deny = ["127.0.0.1:${forbidden.port}", "127.0.0.1:${udpForbidden.port}", "denied.test", "10.0.0.0/8"]
allow = ["127.0.0.1", "::1"]
bind_ports = "1024-65535"
max_connections = 64
max_bandwidth_mbps = 0
[limits]
stream_buffer_bytes = ${WINDOW}
`,
    "posix-adapter.test.toml",
  );
  srv = await startServer({
    policy,
    resolver: async (n) => RESOLVE[n] ?? [],
    logger: createLogger("info", (l) => logLines.push(JSON.parse(l))),
  });
  url = `ws://127.0.0.1:${srv.port}/posix/`;
});

afterAll(async () => {
  await srv.stop();
  for (const t of [echo, echo6, forbidden]) t.stop();
  for (const p of [udpEchoPeer, udpEcho6, udpForbidden]) p?.stop();
});

const metrics = () => srv.handler.ctx.metrics;

/** Opens a client; the test ends with every request answered exactly once. */
async function client(): Promise<PosixClient> {
  return PosixClient.open(url);
}

function expectAllAnswered(c: PosixClient): void {
  const a = c.allAnswered;
  expect(a.waiting).toEqual([]);
  expect(a.unexpected).toEqual([]);
  expect(a.replies).toBe(a.sent);
}

async function connected(c: PosixClient, port: number, host = "127.0.0.1"): Promise<number> {
  const fd = await c.fd(host.includes(":") ? AF.INET6 : AF.INET);
  const r = await c.call(req.connect(fd, sockaddr(host, port)));
  if (r.ret !== 0) throw new Error(`connect ${host}:${port}: errno ${r.errno}`);
  return fd;
}

/** recv until `n` bytes arrived (or EOF). */
async function recvAll(c: PosixClient, fd: number, n: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let got = 0;
  while (got < n) {
    const r = await c.call(req.recv(fd, n - got));
    if (r.ret < 0) throw new Error(`recv: errno ${r.errno}`);
    if (r.ret === 0) break;
    parts.push(recvData(r).slice());
    got += r.ret;
  }
  return Buffer.concat(parts);
}

/** A TCP server that accepts and keeps its sockets, saying nothing until told. */
/**
 * Fills everything between `fd` and a paused sink (kernel buffers, then the window) with
 * MSG_DONTWAIT sends until EAGAIN; returns the bytes sent.
 */
async function fillToPausedSink(c: PosixClient, fd: number, sink: ReturnType<typeof sinkServer>): Promise<number> {
  await waitFor(() => sink.sockets.size === 1, "the sink to accept");
  const chunk = makePayload(16 * 1024, 3);
  let sent = 0;
  for (;;) {
    const r = await c.call(req.send(fd, chunk, MSG.DONTWAIT));
    if (r.ret < 0) {
      expect(r.errno).toBe(ERRNO.EAGAIN);
      return sent;
    }
    expect(r.ret).toBeGreaterThan(0);
    sent += r.ret;
    if (sent > 256 * 1024 * 1024) throw new Error("the window never filled");
  }
}

function quietServer() {
  const sockets: Socket<undefined>[] = [];
  const received: Uint8Array[] = [];
  let closes = 0;
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open: (s) => void sockets.push(s),
      data: (_s, d) => void received.push(d),
      close: () => void closes++,
      error() {},
    },
  });
  return { port: listener.port, sockets, received, get closes() { return closes; }, stop: () => listener.stop(true) };
}

// ---------------------------------------------------------------------------------------------

describe("socket", () => {
  test("fds are small per-session numbers from 3, never reused; bad domain / type / protocol", async () => {
    const c = await client();
    const a = await c.socket(AF.INET, SOCK.STREAM);
    expect([a.ret, a.errno, a.bytes.length]).toEqual([3, 0, 12]);
    expect((await c.socket(AF.INET6, SOCK.DGRAM, IPPROTO.UDP)).ret).toBe(4);
    expect((await c.socket(AF.INET, SOCK.STREAM | SOCK.NONBLOCK | SOCK.CLOEXEC, IPPROTO.TCP)).ret).toBe(5);
    // Another session counts on its own.
    const other = await client();
    expect((await other.socket()).ret).toBe(3);
    expect((await c.call(req.shutdown(3, SHUT.RDWR))).ret).toBe(0);
    expect((await c.socket()).ret).toBe(6); // 3 is free again but not handed out again
    for (const [domain, type, proto, errno] of [
      [1, SOCK.STREAM, 0, ERRNO.EAFNOSUPPORT], // AF_UNIX
      [AF.INET, SOCK.RAW, 0, ERRNO.EPROTONOSUPPORT],
      [AF.INET, SOCK.STREAM, IPPROTO.UDP, ERRNO.EPROTONOSUPPORT],
    ]) {
      const r = await c.socket(domain, type, proto);
      expect([r.ret, r.errno, r.bytes.length]).toEqual([-1, errno, 12]);
    }
    // socketpair: no such thing for Internet sockets; the reply has room for sv[2].
    const sp = await c.call(req.socketpair(AF.INET, SOCK.STREAM));
    expect([sp.ret, sp.errno, sp.bytes.length]).toEqual([-1, ERRNO.EOPNOTSUPP, 20]);
    expectAllAnswered(c);
    expectAllAnswered(other);
    c.close();
    other.close();
  });

  test("max_connections bounds the open fds (EMFILE)", async () => {
    const c = await client();
    for (let i = 0; i < 64; i++) expect((await c.socket()).ret).toBe(3 + i);
    const r = await c.socket();
    expect([r.ret, r.errno]).toEqual([-1, ERRNO.EMFILE]);
    expect((await c.call(req.shutdown(10, SHUT.RDWR))).ret).toBe(0);
    expect((await c.socket()).ret).toBe(3 + 64);
    expectAllAnswered(c);
    c.close();
  });
});

describe("TCP", () => {
  test("connect, send, recv: layouts, byte counts, names, options", async () => {
    const c = await client();
    const tcpBefore = metrics().sockets.tcp;
    const fd = await c.fd();
    const con = await c.call(req.connect(fd, sockaddr("127.0.0.1", echo.port)));
    expect([con.ret, con.errno, con.bytes.length]).toEqual([0, 0, 12]);
    expect(metrics().sockets.tcp).toBe(tcpBefore + 1); // counted as any TCP stream
    const line = te.encode("hello over posix\n");
    const s = await c.call(req.send(fd, line));
    expect([s.ret, s.errno, s.bytes.length]).toEqual([line.length, 0, 12]);
    const back = await recvAll(c, fd, line.length);
    expect(td.decode(back)).toBe("hello over posix\n");
    // recvfrom on a stream: the data, and no address.
    await c.call(req.send(fd, te.encode("xy")));
    const rf = await c.call(req.recvfrom(fd, 2, MSG.WAITALL));
    expect(rf.ret).toBe(2);
    expect(recvfromParts(rf)).toMatchObject({ addrlen: 0, from: null });
    expect(td.decode(recvfromParts(rf).data)).toBe("xy");

    const peer = await c.call(req.getpeername(fd));
    expect(peer.ret).toBe(0);
    expect(addressOf(peer)).toEqual({ addrlen: 16, addr: { family: "ipv4", address: "127.0.0.1", port: echo.port } });
    const name = await c.call(req.getsockname(fd));
    expect(addressOf(name).addrlen).toBe(16);

    // Options: accepted and reported back; SO_ERROR 0 as an exact 4-byte value (no length field).
    for (const [level, opt] of [
      [IPPROTO.TCP, TCP_OPT.NODELAY],
      [SOL_SOCKET, SO.REUSEADDR],
      [SOL_SOCKET, SO.KEEPALIVE],
    ]) {
      expect((await c.call(req.setsockopt(fd, level, opt, int32(1)))).ret).toBe(0);
      const g = await c.call(req.getsockopt(fd, level, opt));
      expect([g.ret, [...optionValue(g)]]).toEqual([0, [1, 0, 0, 0]]);
    }
    const err = await c.call(req.getsockopt(fd, SOL_SOCKET, SO.ERROR));
    expect([err.ret, err.bytes.length, [...optionValue(err)]]).toEqual([0, 16, [0, 0, 0, 0]]);
    const type = await c.call(req.getsockopt(fd, SOL_SOCKET, SO.TYPE));
    expect([...optionValue(type)]).toEqual([SOCK.STREAM, 0, 0, 0]);
    const unknown = await c.call(req.getsockopt(fd, SOL_SOCKET, 12345));
    expect([unknown.ret, unknown.errno]).toEqual([-1, ERRNO.ENOPROTOOPT]);
    const short = await c.call(req.setsockopt(fd, SOL_SOCKET, SO.KEEPALIVE, new Uint8Array(2)));
    expect([short.ret, short.errno]).toEqual([-1, ERRNO.EINVAL]);
    const rcv = await c.call(req.getsockopt(fd, SOL_SOCKET, SO.RCVTIMEO, 8));
    expect(optionValue(rcv).length).toBe(8);

    expect((await c.call(req.connect(fd, sockaddr("127.0.0.1", echo.port)))).errno).toBe(ERRNO.EISCONN);
    expect((await c.call(req.shutdown(fd, SHUT.RDWR))).ret).toBe(0);
    await waitFor(() => metrics().sockets.tcp === tcpBefore, "the stream to be counted closed");
    expectAllAnswered(c);
    c.close();
  });

  test("IPv6: 28-byte addresses both ways", async () => {
    const c = await client();
    const fd = await connected(c, echo6.port, "::1");
    const peer = addressOf(await c.call(req.getpeername(fd)));
    expect(peer).toEqual({ addrlen: 28, addr: { family: "ipv6", address: "::1", port: echo6.port, flowinfo: 0, scopeId: 0 } });
    await c.call(req.send(fd, te.encode("v6")));
    expect(td.decode(await recvAll(c, fd, 2))).toBe("v6");
    // An IPv4 address on an AF_INET6 socket, and the other way round.
    const fd4 = await c.fd(AF.INET);
    expect((await c.call(req.connect(fd4, sockaddr("::1", echo6.port)))).errno).toBe(ERRNO.EAFNOSUPPORT);
    expectAllAnswered(c);
    c.close();
  });

  test("ECONNREFUSED in the program's numbering; the fd may connect again", async () => {
    const c = await client();
    const fd = await c.fd();
    const r = await c.call(req.connect(fd, sockaddr("127.0.0.1", freePort())));
    expect([r.ret, r.errno, r.bytes.length]).toEqual([-1, ERRNO.ECONNREFUSED, 12]);
    expect(r.errno).toBe(14);
    const again = await c.call(req.connect(fd, sockaddr("127.0.0.1", echo.port)));
    expect(again.ret).toBe(0);
    await c.call(req.send(fd, te.encode("ok")));
    expect(td.decode(await recvAll(c, fd, 2))).toBe("ok");
    const send = await c.call(req.send(await c.fd(), te.encode("x")));
    expect([send.ret, send.errno]).toEqual([-1, ERRNO.ENOTCONN]);
    expectAllAnswered(c);
    c.close();
  });

  test("a blocking recv on one fd never holds up calls on another (replies out of order)", async () => {
    const c = await client();
    const quiet = quietServer();
    try {
      const a = await connected(c, quiet.port);
      await waitFor(() => quiet.sockets.length === 1, "the quiet server to accept");
      const recvA = c.issue(req.recv(a, 100));
      const acceptWaits = await c.fd();
      await c.call(req.bind(acceptWaits, sockaddr("127.0.0.1", 0)));
      await c.call(req.listen(acceptWaits, 1));
      const acceptA = c.issue(req.accept(acceptWaits));
      // Meanwhile fd B connects, sends and receives.
      const b = await connected(c, echo.port);
      expect((await c.call(req.send(b, te.encode("bee")))).ret).toBe(3);
      expect(td.decode(await recvAll(c, b, 3))).toBe("bee");
      expect(c.waiting.sort()).toEqual([recvA.callId, acceptA.callId].sort());
      // Now A's target speaks: A's recv completes, after B's calls that were issued later.
      quiet.sockets[0]!.write("late");
      const r = await withTimeout(recvA.reply, "A's recv");
      expect(td.decode(recvData(r))).toBe("late");
      expect(c.order.indexOf(recvA.callId)).toBeGreaterThan(c.order.indexOf(recvA.callId + 1));
      // Free the listener: the waiting accept is answered (EINVAL), never left hanging.
      expect((await c.call(req.shutdown(acceptWaits, SHUT.RDWR))).ret).toBe(0);
      expect((await withTimeout(acceptA.reply, "the accept")).errno).toBe(ERRNO.EINVAL);
      expectAllAnswered(c);
    } finally {
      c.close();
      quiet.stop();
    }
  });

  test("recv: buffered bytes up to maxlen, MSG_PEEK, orderly EOF gives 0, huge maxlen capped", async () => {
    const c = await client();
    const payload = makePayload(3000, 5);
    const source = sourceServer(payload);
    try {
      const fd = await connected(c, source.port);
      const peek = await c.call(req.recv(fd, 10, MSG.PEEK | MSG.WAITALL));
      const first = await c.call(req.recv(fd, 10));
      expect(peek.ret).toBe(10);
      expect([...recvData(peek)]).toEqual([...payload.subarray(0, 10)]);
      expect([...recvData(first)]).toEqual([...payload.subarray(0, first.ret)]);
      // maxlen is an unchecked u32: 4 GiB asks for everything, the reply is what is buffered.
      const rest: Uint8Array[] = [recvData(first).slice()];
      for (;;) {
        const r = await c.call(req.recv(fd, 0xffffffff));
        expect(r.ret).toBeGreaterThanOrEqual(0);
        expect(r.bytes.length).toBe(12 + r.ret);
        if (r.ret === 0) break; // EOF: the source closed after its 3000 bytes
        rest.push(recvData(r).slice());
      }
      expect(sha256(Buffer.concat(rest))).toBe(sha256(payload));
      expect((await c.call(req.recv(fd, 10))).ret).toBe(0); // and stays at EOF
      expectAllAnswered(c);
    } finally {
      c.close();
      source.stop();
    }
  });

  test("EAGAIN: MSG_DONTWAIT, SOCK_NONBLOCK and SO_RCVTIMEO; EINPROGRESS then EISCONN", async () => {
    const c = await client();
    const quiet = quietServer();
    try {
      const fd = await connected(c, quiet.port);
      const dw = await c.call(req.recv(fd, 10, MSG.DONTWAIT));
      expect([dw.ret, dw.errno, dw.bytes.length]).toEqual([-1, ERRNO.EAGAIN, 12]);
      expect(dw.errno).toBe(6);
      // SO_RCVTIMEO 150 ms: a recv with nothing to read gives up with EAGAIN.
      expect((await c.call(req.setsockopt(fd, SOL_SOCKET, SO.RCVTIMEO, timeval(150)))).ret).toBe(0);
      expect([...optionValue(await c.call(req.getsockopt(fd, SOL_SOCKET, SO.RCVTIMEO, 8)))]).toEqual([...timeval(150)]);
      const started = performance.now();
      const timed = await c.call(req.recv(fd, 10));
      expect([timed.ret, timed.errno]).toEqual([-1, ERRNO.EAGAIN]);
      expect(performance.now() - started).toBeGreaterThanOrEqual(140);
      // A bad timeval is EINVAL.
      expect((await c.call(req.setsockopt(fd, SOL_SOCKET, SO.RCVTIMEO, msg([0, 2_000_000])))).errno).toBe(ERRNO.EINVAL);

      // SOCK_NONBLOCK: connect answers EINPROGRESS, recv EAGAIN, and a later connect EISCONN.
      const nb = (await c.socket(AF.INET, SOCK.STREAM | SOCK.NONBLOCK)).ret;
      const con = await c.call(req.connect(nb, sockaddr("127.0.0.1", echo.port)));
      expect([con.ret, con.errno]).toEqual([-1, ERRNO.EINPROGRESS]);
      await waitFor(async () => (await c.call(req.connect(nb, sockaddr("127.0.0.1", echo.port)))).errno === ERRNO.EISCONN, "the non-blocking connect to complete");
      expect((await c.call(req.recv(nb, 10))).errno).toBe(ERRNO.EAGAIN);
      expect((await c.call(req.getsockopt(nb, SOL_SOCKET, SO.ERROR))).bytes.length).toBe(16);
      // A non-blocking connect that fails: SO_ERROR tells, once.
      const nb2 = (await c.socket(AF.INET, SOCK.STREAM | SOCK.NONBLOCK)).ret;
      const refused = await c.call(req.connect(nb2, sockaddr("127.0.0.1", freePort())));
      expect(refused.errno).toBe(ERRNO.EINPROGRESS);
      await waitFor(async () => {
        const e = await c.call(req.getsockopt(nb2, SOL_SOCKET, SO.ERROR));
        return new DataView(e.bytes.buffer, e.bytes.byteOffset).getInt32(12, true) === ERRNO.ECONNREFUSED;
      }, "SO_ERROR to report ECONNREFUSED");
      expectAllAnswered(c);
    } finally {
      c.close();
      quiet.stop();
    }
  });

  test("send: a send beyond the window blocks until the target takes bytes; MSG_DONTWAIT gets EAGAIN", async () => {
    const c = await client();
    const sink = sinkServer({ paused: true });
    try {
      const fd = await connected(c, sink.port);
      const sent = await fillToPausedSink(c, fd, sink);
      // A blocking send now waits: nothing answers it while the sink reads nothing.
      const big = makePayload(3 * WINDOW, 9);
      const blocked = c.issue(req.send(fd, big));
      const other = await connected(c, echo.port); // …and other fds go on meanwhile
      await c.call(req.send(other, te.encode("still")));
      expect(td.decode(await recvAll(c, other, 5))).toBe("still");
      await Bun.sleep(200); // "nothing happens within 200 ms": the point of the check
      expect(c.waiting).toEqual([blocked.callId]);
      for (const s of sink.sockets) s.resume();
      const r = await withTimeout(blocked.reply, "the blocked send once the sink reads", 20_000);
      expect([r.ret, r.errno]).toEqual([big.length, 0]);
      await waitFor(() => sink.received === sent + big.length, { what: "every byte at the sink", detail: () => sink.received });
      expectAllAnswered(c);
    } finally {
      c.close();
      sink.stop();
    }
  });

  test("SO_SNDTIMEO: a send blocked on window room gives up with EAGAIN, and its bytes never reach the target", async () => {
    const c = await client();
    const sink = sinkServer({ paused: true });
    try {
      const fd = await connected(c, sink.port);
      const sent = await fillToPausedSink(c, fd, sink);
      expect((await c.call(req.setsockopt(fd, SOL_SOCKET, SO.SNDTIMEO, timeval(150)))).ret).toBe(0);
      expect([...optionValue(await c.call(req.getsockopt(fd, SOL_SOCKET, SO.SNDTIMEO, 8)))]).toEqual([...timeval(150)]);
      const started = performance.now();
      const timed = await withTimeout(c.call(req.send(fd, makePayload(2 * WINDOW, 5))), "the send to time out", 10_000);
      expect([timed.ret, timed.errno]).toEqual([-1, ERRNO.EAGAIN]);
      expect(performance.now() - started).toBeGreaterThanOrEqual(140);
      // Once the sink reads, a send with the timeout completes whole; the one that gave up is not sent.
      for (const s of sink.sockets) s.resume();
      const last = te.encode("after the timeout");
      const r = await withTimeout(c.call(req.send(fd, last)), "a send once the sink reads", 20_000);
      expect([r.ret, r.errno]).toEqual([last.length, 0]);
      // Had the given-up bytes gone out, they would come before `last` and the total would pass this.
      expect(await waitForSteady(() => sink.received, { what: "the sink to stop receiving", quietMs: 300, timeoutMs: 20_000 })).toBe(sent + last.length);
      expectAllAnswered(c);
    } finally {
      c.close();
      sink.stop();
    }
  });

  test("shutdown(SHUT_WR) half-closes: the target sees FIN and the reply still arrives", async () => {
    const c = await client();
    const fd = await connected(c, echo.port);
    await c.call(req.send(fd, te.encode("last words")));
    expect((await c.call(req.shutdown(fd, SHUT.WR))).ret).toBe(0);
    // The echo server answers, then closes on our FIN: recv reads the answer, then EOF.
    expect(td.decode(await recvAll(c, fd, 100))).toBe("last words");
    expect((await c.call(req.recv(fd, 10))).ret).toBe(0);
    expect((await c.call(req.send(fd, te.encode("more")))).errno).toBe(ERRNO.EPIPE);
    expect((await c.call(req.shutdown(fd, 7))).errno).toBe(ERRNO.EINVAL);
    const fresh = await c.fd();
    expect((await c.call(req.shutdown(fresh, SHUT.WR))).errno).toBe(ERRNO.ENOTCONN);
    expectAllAnswered(c);
    c.close();
  });
});

describe("bind, listen, accept", () => {
  test("a connection from outside is accepted, with its address, and talks both ways", async () => {
    const c = await client();
    const fd = await c.fd();
    expect((await c.call(req.setsockopt(fd, SOL_SOCKET, SO.REUSEADDR, int32(1)))).ret).toBe(0);
    const b = await c.call(req.bind(fd, sockaddr("127.0.0.1", 0)));
    expect([b.ret, b.errno, b.bytes.length]).toEqual([0, 0, 12]);
    expect(metrics().sockets.listener).toBeGreaterThan(0);
    const l = await c.call(req.listen(fd, 4));
    expect([l.ret, l.bytes.length]).toEqual([0, 12]);
    const name = addressOf(await c.call(req.getsockname(fd)));
    expect(name.addr).toMatchObject({ family: "ipv4", address: "127.0.0.1" });
    const port = name.addr!.port;
    expect(port).toBeGreaterThan(0);
    const acc = c.issue(req.accept(fd));
    // The test dials in.
    const got: Uint8Array[] = [];
    const dialer = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data: (_s, d) => void got.push(d), error() {} } });
    const a = await withTimeout(acc.reply, "accept");
    expect(a.ret).toBeGreaterThan(fd);
    expect(a.errno).toBe(0);
    expect(addressOf(a)).toEqual({ addrlen: 16, addr: { family: "ipv4", address: "127.0.0.1", port: dialer.localPort } });
    dialer.write("ping\n");
    expect(td.decode(await recvAll(c, a.ret, 5))).toBe("ping\n");
    expect((await c.call(req.send(a.ret, te.encode("pong\n")))).ret).toBe(5);
    await waitFor(() => Buffer.concat(got).toString() === "pong\n", "the dialer to get the answer");
    expect(addressOf(await c.call(req.getpeername(a.ret))).addr).toMatchObject({ port: dialer.localPort });
    // accept with MSG_DONTWAIT semantics comes from SOCK_NONBLOCK only; SO_RCVTIMEO bounds a wait.
    await c.call(req.setsockopt(fd, SOL_SOCKET, SO.RCVTIMEO, timeval(100)));
    expect((await c.call(req.accept(fd))).errno).toBe(ERRNO.EAGAIN);
    // Freeing the listener stops it: the port refuses.
    expect((await c.call(req.shutdown(fd, SHUT.RDWR))).ret).toBe(0);
    await waitFor(async () => Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {}, error() {} } }).then((s) => (s.end(), false), () => true), `port ${port} to refuse`);
    dialer.end();
    expectAllAnswered(c);
    c.close();
  });

  test("listen() without bind() picks a port; bind() without listen() turns connections away; EADDRINUSE", async () => {
    const c = await client();
    const auto = await c.fd(AF.INET6);
    expect((await c.call(req.listen(auto, 1))).ret).toBe(0);
    const autoName = addressOf(await c.call(req.getsockname(auto)));
    expect(autoName.addr).toMatchObject({ family: "ipv6", address: "::" });
    expect(autoName.addr!.port).toBeGreaterThan(0);

    const fd = await c.fd();
    await c.call(req.bind(fd, sockaddr("127.0.0.1", 0)));
    const port = addressOf(await c.call(req.getsockname(fd))).addr!.port;
    // Not listening yet: the connection is closed at once.
    let closed = false;
    await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {}, close: () => void (closed = true), error() {} } });
    await waitFor(() => closed, "the early connection to be turned away");
    expect((await c.call(req.bind(fd, sockaddr("127.0.0.1", 0)))).errno).toBe(ERRNO.EINVAL); // bound already

    const taken = await c.fd();
    const inUse = await c.call(req.bind(taken, sockaddr("127.0.0.1", echo.port)));
    expect([inUse.ret, inUse.errno]).toEqual([-1, ERRNO.EADDRINUSE]);
    expect(inUse.errno).toBe(3);
    // A datagram socket's bind is recorded; listen/accept are not for it.
    const udp = await c.fd(AF.INET, SOCK.DGRAM);
    expect((await c.call(req.bind(udp, sockaddr("127.0.0.1", 0)))).ret).toBe(0);
    expect((await c.call(req.listen(udp, 1))).errno).toBe(ERRNO.EOPNOTSUPP);
    expect((await c.call(req.accept(fd))).errno).toBe(ERRNO.EINVAL); // bound, not listening
    expectAllAnswered(c);
    c.close();
  });
});

describe("UDP", () => {
  test("sendto opens, recvfrom reports the sender; only peers the socket sent to are heard", async () => {
    const c = await client();
    const udpBefore = metrics().sockets.udp;
    const fd = await c.fd(AF.INET, SOCK.DGRAM);
    const dgram = te.encode("datagram over posix");
    const s = await c.call(req.sendto(fd, dgram, sockaddr("127.0.0.1", udpEchoPeer.port)));
    expect([s.ret, s.errno, s.bytes.length]).toEqual([dgram.length, 0, 12]);
    expect(metrics().sockets.udp).toBe(udpBefore + 1);
    const r = await c.call(req.recvfrom(fd, 100));
    expect(r.ret).toBe(dgram.length);
    const parts = recvfromParts(r);
    expect(td.decode(parts.data)).toBe("datagram over posix");
    expect(parts.addrlen).toBe(16);
    expect(parts.from).toEqual({ family: "ipv4", address: "127.0.0.1", port: udpEchoPeer.port });
    // A stranger sending to the socket's port is not heard (it was never sent to).
    const local = addressOf(await c.call(req.getsockname(fd))).addr!;
    expect(local.port).toBeGreaterThan(0);
    const stranger = await udpPeer("127.0.0.1", false);
    stranger.socket.send("not for you", local.port, "127.0.0.1");
    await c.call(req.sendto(fd, te.encode("again"), sockaddr("127.0.0.1", udpEchoPeer.port)));
    const again = await c.call(req.recvfrom(fd, 100));
    expect(td.decode(recvfromParts(again).data)).toBe("again");
    expect((await c.call(req.recvfrom(fd, 100, MSG.DONTWAIT))).errno).toBe(ERRNO.EAGAIN);
    stranger.stop();
    // Truncation to maxlen; recv without an address; MSG_PEEK leaves the datagram.
    await c.call(req.sendto(fd, te.encode("0123456789"), sockaddr("127.0.0.1", udpEchoPeer.port)));
    const peeked = await c.call(req.recv(fd, 4, MSG.PEEK));
    expect(td.decode(recvData(peeked))).toBe("0123");
    const cut = await c.call(req.recv(fd, 4));
    expect([cut.ret, td.decode(recvData(cut))]).toEqual([4, "0123"]);
    expect((await c.call(req.recv(fd, 4, MSG.DONTWAIT))).errno).toBe(ERRNO.EAGAIN); // the rest was discarded
    // send() needs a connected socket.
    expect((await c.call(req.send(fd, te.encode("x")))).errno).toBe(ERRNO.EDESTADDRREQ);
    expect((await c.call(req.getpeername(fd))).errno).toBe(ERRNO.ENOTCONN);
    expect((await c.call(req.sendto(fd, new Uint8Array(70_000), sockaddr("127.0.0.1", udpEchoPeer.port)))).errno).toBe(ERRNO.EMSGSIZE);
    expectAllAnswered(c);
    c.close();
    await waitFor(() => metrics().sockets.udp === udpBefore, "the UDP socket to be counted closed");
  });

  test("connect() on a datagram socket: send/recv to its peer; IPv6", async () => {
    const c = await client();
    const fd = await c.fd(AF.INET6, SOCK.DGRAM);
    expect((await c.call(req.connect(fd, sockaddr("::1", udpEcho6.port)))).ret).toBe(0);
    expect((await c.call(req.send(fd, te.encode("six")))).ret).toBe(3);
    const r = await c.call(req.recvfrom(fd, 10));
    expect(recvfromParts(r)).toMatchObject({ addrlen: 28, from: { family: "ipv6", address: "::1", port: udpEcho6.port } });
    expect(addressOf(await c.call(req.getpeername(fd))).addr).toMatchObject({ address: "::1", port: udpEcho6.port });
    expectAllAnswered(c);
    c.close();
  });

  test("the datagram queue is bounded: beyond it datagrams are dropped and counted", async () => {
    const c = await client();
    const fd = await c.fd(AF.INET, SOCK.DGRAM);
    const before = metrics().udpDrops.get("backpressure") ?? 0;
    const n = 300;
    for (let i = 0; i < n; i++) expect((await c.call(req.sendto(fd, te.encode(`d${i}`), sockaddr("127.0.0.1", udpEchoPeer.port)))).ret).toBeGreaterThan(0);
    // 256 wait for recvfrom; the other 44 were dropped, counted.
    await waitFor(() => (metrics().udpDrops.get("backpressure") ?? 0) - before >= n - 256, {
      what: "the datagrams beyond the queue to be counted as dropped",
      detail: () => (metrics().udpDrops.get("backpressure") ?? 0) - before,
    });
    let queued = 0;
    while ((await c.call(req.recvfrom(fd, 100, MSG.DONTWAIT))).ret > 0) queued++;
    expect(queued).toBe(256);
    expect((metrics().udpDrops.get("backpressure") ?? 0) - before).toBe(n - 256);
    expectAllAnswered(c);
    c.close();
  });
});

describe("getaddrinfo", () => {
  test("names through the session's resolve: hints, services, only allowed addresses", async () => {
    const c = await client();
    const dual = await c.call(req.getaddrinfo("dual.test", "8080", { socktype: SOCK.STREAM }));
    expect(dual.ret).toBe(0);
    expect(addrinfo(dual).records.map((r) => [r.family, r.socktype, r.protocol, fam(r.addr)])).toEqual([
      [AF.INET, SOCK.STREAM, IPPROTO.TCP, "127.0.0.1:8080"],
      [AF.INET6, SOCK.STREAM, IPPROTO.TCP, "[::1]:8080"],
    ]);
    // Family hint; no socktype: one record per type; a service by name; AI_CANONNAME.
    const v4 = addrinfo(await c.call(req.getaddrinfo("dual.test", "http", { family: AF.INET, flags: AI.CANONNAME })));
    expect(v4.canonname).toBe("dual.test");
    expect(v4.records.map((r) => [r.socktype, r.protocol, fam(r.addr)])).toEqual([
      [SOCK.STREAM, IPPROTO.TCP, "127.0.0.1:80"],
      [SOCK.DGRAM, IPPROTO.UDP, "127.0.0.1:80"],
    ]);
    // Only what the policy allows: 10.1.2.3 is left out; a name with nothing allowed is EAI_NONAME.
    const mixed = addrinfo(await c.call(req.getaddrinfo("mixed.test", "53", { socktype: SOCK.DGRAM })));
    expect(mixed.records.map((r) => fam(r.addr))).toEqual(["127.0.0.1:53"]);
    for (const [node, hints] of [
      ["far.test", null],
      ["denied.test", null],
      ["10.1.2.3", { flags: AI.NUMERICHOST }],
      ["nowhere.test", null],
      ["echo.test", { flags: AI.NUMERICHOST }],
      ["echo.test", { family: AF.INET6 }],
    ] as const) {
      const r = await c.call(req.getaddrinfo(node, "80", hints));
      expect([node, r.ret, r.bytes.length]).toEqual([node, EAI.NONAME, 2064]);
    }
    // Literals, AI_NUMERICHOST; AI_V4MAPPED.
    const lit = addrinfo(await c.call(req.getaddrinfo("127.0.0.1", "53", { flags: AI.NUMERICHOST, socktype: SOCK.DGRAM })));
    expect(lit.records.map((r) => fam(r.addr))).toEqual(["127.0.0.1:53"]);
    const mapped = addrinfo(await c.call(req.getaddrinfo("echo.test", "7", { family: AF.INET6, flags: AI.V4MAPPED, socktype: SOCK.STREAM })));
    expect(mapped.records.map((r) => fam(r.addr))).toEqual(["[::ffff:127.0.0.1]:7"]);
    // NULL node: the wildcard with AI_PASSIVE, loopback without; NULL node and service: EAI_NONAME.
    const passive = addrinfo(await c.call(req.getaddrinfo(null, "9000", { flags: AI.PASSIVE, socktype: SOCK.STREAM })));
    expect(passive.records.map((r) => fam(r.addr))).toEqual(["0.0.0.0:9000", "[::]:9000"]);
    const loop = addrinfo(await c.call(req.getaddrinfo(null, "9000", { family: AF.INET, socktype: SOCK.STREAM })));
    expect(loop.records.map((r) => fam(r.addr))).toEqual(["127.0.0.1:9000"]);
    expect((await c.call(req.getaddrinfo(null, null, null))).ret).toBe(EAI.NONAME);
    // Bad hints and services.
    expect((await c.call(req.getaddrinfo("echo.test", "no-such-service", null))).ret).toBe(EAI.SERVICE);
    expect((await c.call(req.getaddrinfo("echo.test", "70000", null))).ret).toBe(EAI.SERVICE);
    expect((await c.call(req.getaddrinfo("echo.test", "http", { flags: AI.NUMERICSERV }))).ret).toBe(EAI.NONAME);
    expect((await c.call(req.getaddrinfo("echo.test", "80", { family: 1 }))).ret).toBe(EAI.FAMILY);
    expect((await c.call(req.getaddrinfo("echo.test", "80", { socktype: SOCK.RAW }))).ret).toBe(EAI.SOCKTYPE);
    expect((await c.call(req.getaddrinfo("echo.test", "80", { flags: 0x8000 }))).ret).toBe(EAI.BADFLAGS);
    expectAllAnswered(c);
    c.close();
  });
});

describe("policy refusals: EACCES (EAI_NONAME for getaddrinfo)", () => {
  test("connect, sendto (first and later datagrams), bind", async () => {
    const c = await client();
    const deniedBefore = [...metrics().denials.values()].reduce((a, b) => a + b, 0);
    const fd = await c.fd();
    const r = await c.call(req.connect(fd, sockaddr("127.0.0.1", forbidden.port)));
    expect([r.ret, r.errno, r.bytes.length]).toEqual([-1, ERRNO.EACCES, 12]);
    expect(r.errno).toBe(2);
    expect(forbidden.accepted).toBe(0);
    // The same fd may then go where it is allowed.
    expect((await c.call(req.connect(fd, sockaddr("127.0.0.1", echo.port)))).ret).toBe(0);
    // A non-blocking connect refused by the policy is answered at once.
    const nb = (await c.socket(AF.INET, SOCK.STREAM | SOCK.NONBLOCK)).ret;
    expect((await c.call(req.connect(nb, sockaddr("127.0.0.1", forbidden.port)))).errno).toBe(ERRNO.EACCES);

    const udp = await c.fd(AF.INET, SOCK.DGRAM);
    const first = await c.call(req.sendto(udp, te.encode("no"), sockaddr("127.0.0.1", udpForbidden.port)));
    expect([first.ret, first.errno]).toEqual([-1, ERRNO.EACCES]);
    expect((await c.call(req.sendto(udp, te.encode("yes"), sockaddr("127.0.0.1", udpEchoPeer.port)))).ret).toBe(3);
    const later = await c.call(req.sendto(udp, te.encode("no"), sockaddr("127.0.0.1", udpForbidden.port)));
    expect([later.ret, later.errno]).toEqual([-1, ERRNO.EACCES]);
    expect(td.decode(recvfromParts(await c.call(req.recvfrom(udp, 10))).data)).toBe("yes");
    expect(udpForbidden.got).toEqual([]);
    const udpConnect = await c.fd(AF.INET, SOCK.DGRAM);
    expect((await c.call(req.connect(udpConnect, sockaddr("127.0.0.1", udpForbidden.port)))).errno).toBe(ERRNO.EACCES);

    const l = await c.fd();
    const notLocal = await c.call(req.bind(l, sockaddr("10.0.0.1", 0)));
    expect([notLocal.ret, notLocal.errno]).toEqual([-1, ERRNO.EACCES]);
    const lowPort = await c.call(req.bind(l, sockaddr("127.0.0.1", 80)));
    expect([lowPort.ret, lowPort.errno]).toEqual([-1, ERRNO.EACCES]);
    expect((await c.call(req.bind(l, sockaddr("127.0.0.1", 0)))).ret).toBe(0);

    expect([...metrics().denials.values()].reduce((a, b) => a + b, 0) - deniedBefore).toBe(7);
    expectAllAnswered(c);
    c.close();
  });
});

describe("EBADF, malformed requests, oversized messages", () => {
  test("a foreign or freed fd is EBADF, for every call that takes one", async () => {
    const c = await client();
    const fd = await c.fd();
    expect((await c.call(req.shutdown(fd, SHUT.RDWR))).ret).toBe(0);
    const calls: Array<[number, Uint8Array]> = [
      [POSIX_CALL.shutdown, req.shutdown(fd, SHUT.RDWR)],
      [POSIX_CALL.bind, req.bind(fd, sockaddr("127.0.0.1", 0))],
      [POSIX_CALL.connect, req.connect(99, sockaddr("127.0.0.1", echo.port))],
      [POSIX_CALL.listen, req.listen(fd, 1)],
      [POSIX_CALL.accept, req.accept(0)],
      [POSIX_CALL.getsockname, req.getsockname(1)],
      [POSIX_CALL.getpeername, req.getpeername(fd)],
      [POSIX_CALL.send, req.send(2, te.encode("x"))],
      [POSIX_CALL.recv, req.recv(fd, 10)],
      [POSIX_CALL.sendto, req.sendto(-1, te.encode("x"), sockaddr("127.0.0.1", 9))],
      [POSIX_CALL.recvfrom, req.recvfrom(fd, 10)],
      [POSIX_CALL.getsockopt, req.getsockopt(fd, SOL_SOCKET, SO.ERROR)],
      [POSIX_CALL.setsockopt, req.setsockopt(12345, SOL_SOCKET, SO.REUSEADDR, int32(1))],
    ];
    for (const [fn, m] of calls) {
      const r = await c.call(m);
      expect([fn, r.ret, r.errno]).toEqual([fn, -1, ERRNO.EBADF]);
      expect(r.bytes.length).toBeGreaterThanOrEqual(fn === POSIX_CALL.getsockname || fn === POSIX_CALL.getpeername ? 16 : 12);
    }
    expectAllAnswered(c);
    c.close();
  });

  test("0–7 byte messages, wrong lengths, bad families, unknown functions, addrlen 4096: one reply each", async () => {
    const c = await client();
    const errorsBefore = metrics().errors.get("EBADREQ") ?? 0;
    await c.socket();
    // 0–3 bytes: no callId. The stub sends these for getsockname with a small buffer; the reply
    // goes to the next callId in sequence, with room for any call.
    for (const n of [0, 1, 2, 3]) {
      const guess = c.takeCallId();
      const r = await withTimeout(c.raw(new Uint8Array(n).fill(0xee), guess)!, `the reply to a ${n}-byte message`);
      expect([r.ret, r.errno, r.bytes.length]).toEqual([-1, ERRNO.EINVAL, 2064]);
    }
    // 4–7 bytes: a callId but no function: EINVAL, as long as any call's minimum.
    for (const n of [4, 5, 6, 7]) {
      const id = c.takeCallId();
      const m = new Uint8Array(n);
      new DataView(m.buffer).setInt32(0, id, true);
      const r = await withTimeout(c.raw(m, id)!, `the reply to a ${n}-byte message`);
      expect([r.callId, r.ret, r.errno, r.bytes.length]).toEqual([id, -1, ERRNO.EINVAL, 2064]);
    }
    const cases: Array<[string, Uint8Array, number, number, number]> = [
      // [what, message, ret, errno, reply length]
      ["socket, 19 bytes", req.socket(AF.INET, 1).subarray(0, 19), -1, ERRNO.EINVAL, 12],
      ["socket, 21 bytes", msg([0, POSIX_CALL.socket, AF.INET, 1, 0, 0]).subarray(0, 21), -1, ERRNO.EINVAL, 12],
      ["send, length field larger than the data", msg([0, POSIX_CALL.send, 3, 100, 0], new Uint8Array(10)), -1, ERRNO.EINVAL, 12],
      ["connect, AF_UNIX address", req.connect(3, msg([1, 0, 0, 0])), -1, ERRNO.EAFNOSUPPORT, 12],
      ["connect, addrlen 4096", msg([0, POSIX_CALL.connect, 3, 4096], new Uint8Array(4096)), -1, ERRNO.EINVAL, 12],
      ["connect, addrlen 4 (no room for sockaddr_in)", req.connect(3, sockaddr("127.0.0.1", 7).subarray(0, 4)), -1, ERRNO.EINVAL, 12],
      ["sendto, dest_len 4096", msg([0, POSIX_CALL.sendto, 3, 0, 0, 4096], new Uint8Array(256)), -1, ERRNO.EINVAL, 12],
      ["getsockname, 12 bytes", msg([0, POSIX_CALL.getsockname, 3]), -1, ERRNO.EINVAL, 16],
      ["setsockopt, negative optlen", msg([0, POSIX_CALL.setsockopt, 3, 1, 2, -1]), -1, ERRNO.EINVAL, 12],
      ["getaddrinfo, 100 bytes", msg([0, POSIX_CALL.getaddrinfo], new Uint8Array(92)), EAI.SYSTEM, ERRNO.EINVAL, 2064],
      ["unknown function 99", msg([0, 99, 3, 4, 5]), -1, ERRNO.ENOSYS, 2064],
      ["function 0", msg([0, 0]), -1, ERRNO.ENOSYS, 2064],
      ["sendmsg", msg([0, POSIX_CALL.sendmsg, 3]), -1, ERRNO.ENOSYS, 12],
      ["recvmsg", msg([0, POSIX_CALL.recvmsg, 3]), -1, ERRNO.ENOSYS, 12],
      ["getnameinfo", msg([0, POSIX_CALL.getnameinfo]), -1, ERRNO.ENOSYS, 12],
    ];
    for (const [what, m, ret, errno, len] of cases) {
      const r = await c.call(m);
      expect([what, r.ret, r.errno, r.bytes.length]).toEqual([what, ret, errno, len]);
    }
    // A text frame has no callId: counted, not answered; the session goes on.
    c.ws.send("not binary");
    await waitFor(() => (metrics().errors.get("EBADREQ") ?? 0) - errorsBefore >= 8 + cases.length + 1, "the malformed messages to be counted");
    const fd = await connected(c, echo.port);
    await c.call(req.send(fd, te.encode("alive")));
    expect(td.decode(await recvAll(c, fd, 5))).toBe("alive");
    expectAllAnswered(c);
    c.close();
  });

  test("a message over max_message_bytes is answered (EMSGSIZE for send), the session goes on", async () => {
    const small = await startServer({ policy: parsePolicy(`[network]\nallow = ["127.0.0.1"]\ndeny = []\n[limits]\nmax_message_bytes = 4096\n`, "small.toml") });
    try {
      const c = await PosixClient.open(`ws://127.0.0.1:${small.port}/posix/`);
      const fd = await connected(c, echo.port);
      const big = await c.call(req.send(fd, new Uint8Array(5000)));
      expect([big.ret, big.errno]).toEqual([-1, ERRNO.EMSGSIZE]);
      const opt = await c.call(req.setsockopt(fd, SOL_SOCKET, SO.REUSEADDR, new Uint8Array(5000)));
      expect([opt.ret, opt.errno]).toEqual([-1, ERRNO.EINVAL]);
      await c.call(req.send(fd, te.encode("fits")));
      expect(td.decode(await recvAll(c, fd, 4))).toBe("fits");
      expectAllAnswered(c);
      c.close();
    } finally {
      await small.stop();
    }
  });
});

describe("mutated requests", () => {
  test("never a second reply, a reply to a callId never sent, or one shorter than the stub accepts; the session goes on", async () => {
    const c = await client();
    // Valid requests of every kind (fds 3–6 exist, one connected) to mutate.
    const tcp = await connected(c, echo.port);
    await c.fd(AF.INET, SOCK.DGRAM);
    const seeds = [
      req.socket(AF.INET, SOCK.STREAM),
      req.shutdown(tcp, SHUT.WR),
      req.bind(5, sockaddr("127.0.0.1", 0)),
      req.connect(5, sockaddr("127.0.0.1", echo.port)),
      req.listen(5, 1),
      req.accept(5),
      req.getsockname(tcp),
      req.getpeername(tcp),
      req.send(tcp, te.encode("fuzz")),
      req.recv(tcp, 16, MSG.DONTWAIT),
      req.sendto(4, te.encode("fuzz"), sockaddr("127.0.0.1", udpEchoPeer.port)),
      req.recvfrom(4, 16, MSG.DONTWAIT),
      req.getsockopt(tcp, SOL_SOCKET, SO.ERROR),
      req.setsockopt(tcp, SOL_SOCKET, SO.RCVTIMEO, timeval(50)),
      req.getaddrinfo("echo.test", "80", { socktype: SOCK.STREAM }),
    ];
    let x = 0x2545f491;
    const rand = (n: number) => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) % n;
    };
    const sentFn = new Map<number, number>();
    const replies = new Map<number, number>();
    const tooShort: string[] = [];
    c.ws.addEventListener("message", (m) => {
      const b = new Uint8Array(m.data as ArrayBuffer);
      const id = new DataView(b.buffer).getInt32(0, true);
      replies.set(id, (replies.get(id) ?? 0) + 1);
      const fn = sentFn.get(id);
      if (fn !== undefined && b.length < minReplyBytes(fn)) tooShort.push(`call ${id} fn ${fn}: ${b.length} bytes`);
    });
    const first = c.takeCallId();
    for (let i = 0; i < 1500; i++) {
      const seed = seeds[rand(seeds.length)]!;
      let m = seed.slice();
      switch (rand(4)) {
        case 0: // flip bytes after the header
          for (let k = 0; k < 1 + rand(4); k++) if (m.length > 8) m[8 + rand(m.length - 8)] = rand(256);
          break;
        case 1: // truncate (never below the callId)
          m = m.subarray(0, 4 + rand(Math.max(1, m.length - 4)));
          break;
        case 2: // grow
          m = Buffer.concat([m, new Uint8Array(1 + rand(300))]);
          break;
        default: // another function number
          new DataView(m.buffer).setInt32(4, rand(24) - 2, true);
      }
      const id = i === 0 ? first : c.takeCallId();
      const out = m.slice();
      new DataView(out.buffer).setInt32(0, id, true);
      sentFn.set(id, out.length >= 8 ? new DataView(out.buffer).getInt32(4, true) : -1);
      c.ws.send(out);
    }
    // The session is alive and answers in order behind them all.
    const fd = await connected(c, echo.port);
    await c.call(req.send(fd, te.encode("after")));
    expect(td.decode(await recvAll(c, fd, 5))).toBe("after");
    expect([...replies.entries()].filter(([, n]) => n > 1)).toEqual([]);
    expect([...replies.keys()].filter((id) => id >= first && !sentFn.has(id) && id < first + 1500)).toEqual([]);
    expect(tooShort).toEqual([]);
    // Most were answered at once; the rest wait on something (a recv, an accept) or on the session.
    expect(replies.size).toBeGreaterThan(1000);
    c.close();
  });
});

describe("teardown", () => {
  test("closing the WebSocket closes every target, listener and UDP socket of the session", async () => {
    // Start from a server whose earlier sessions are all gone.
    await waitFor(() => srv.handler.sockets.size === 0, "the earlier tests' sessions to close");
    const before = { ...metrics().sockets };
    const c = await client();
    const sink = sinkServer();
    try {
      const fds = [await connected(c, sink.port), await connected(c, sink.port)];
      await waitFor(() => sink.sockets.size === 2, "the sink to hold both connections");
      await c.call(req.send(fds[0]!, te.encode("bytes")));
      const l = await c.fd();
      await c.call(req.bind(l, sockaddr("127.0.0.1", 0)));
      await c.call(req.listen(l, 1));
      const port = addressOf(await c.call(req.getsockname(l))).addr!.port;
      const u = await c.fd(AF.INET, SOCK.DGRAM);
      await c.call(req.sendto(u, te.encode("x"), sockaddr("127.0.0.1", udpEchoPeer.port)));
      c.issue(req.recv(fds[1]!, 10)); // a call still waiting when the page goes away
      c.close();
      await waitFor(() => sink.sockets.size === 0, "the targets to see the close");
      expect(sink.received).toBe(5); // what send() was answered for was delivered first
      await waitFor(async () => Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {}, error() {} } }).then((s) => (s.end(), false), () => true), "the listener to stop");
      await waitFor(() => ["tcp", "udp", "listener", "inbound"].every((k) => metrics().sockets[k as "tcp"] === before[k as "tcp"]), {
        what: "the session's sockets to be counted closed",
        detail: () => metrics().sockets,
      });
    } finally {
      sink.stop();
    }
  });

  test("audit: the session's streams leave their lines like any other session's", async () => {
    const c = await client();
    const fd = await connected(c, echo.port);
    await c.call(req.send(fd, te.encode("audited")));
    await recvAll(c, fd, 7);
    await c.call(req.shutdown(fd, SHUT.RDWR));
    const mine = (l: Record<string, unknown>) => l.msg === "stream end" && l.port === echo.port && l.bytes_up === 7 && l.bytes_down === 7;
    await waitFor(() => logLines.some(mine), {
      what: "the stream's audit line",
      detail: () => logLines.filter((l) => l.msg === "stream end").slice(-3),
    });
    const line = logLines.find(mine)!;
    expect(line).toMatchObject({ kind: "tcp", addr: "127.0.0.1", id: fd });
    c.close();
  });
});

describe("identities", () => {
  test("?token= on /posix/: required, the profile's policy applies, the audit line names the identity", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wasmnet-posix-auth-"));
    const secret = te.encode("a-posix-test-hs256-secret-of-32-bytes!!");
    writeFileSync(join(dir, "secret.key"), secret);
    const other = echoServer();
    const lines: Array<Record<string, unknown>> = [];
    writeFileSync(
      join(dir, "policy.toml"),
      `[network]\ndeny = []\nallow = ["127.0.0.1"]\n[auth]\nrequired = true\naudience = "wasmnet"\nhs256_secret_file = "secret.key"\n[profiles.narrow.network]\nallow = ["127.0.0.1:${echo.port}"]\n`,
    );
    const authed = await startServer({ policy: join(dir, "policy.toml"), logger: createLogger("info", (l) => lines.push(JSON.parse(l))) });
    try {
      const base = `ws://127.0.0.1:${authed.port}/posix/`;
      const status = await fetch(base.replace("ws:", "http:"), { headers: { upgrade: "websocket", connection: "upgrade", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" } });
      expect(status.status).toBe(401);
      const token = await createToken({ secret, sub: "c-program", aud: "wasmnet", ttlSecs: 300, profile: "narrow" });
      const c = await PosixClient.open(`${base}?token=${token}`);
      const fd = await connected(c, echo.port);
      await c.call(req.send(fd, te.encode("mine")));
      expect(td.decode(await recvAll(c, fd, 4))).toBe("mine");
      const denied = await c.call(req.connect(await c.fd(), sockaddr("127.0.0.1", other.port)));
      expect([denied.ret, denied.errno]).toEqual([-1, ERRNO.EACCES]);
      await c.call(req.shutdown(fd, SHUT.RDWR));
      await waitFor(() => lines.some((l) => l.msg === "stream end" && l.port === echo.port), "the audit line");
      expect(lines.find((l) => l.msg === "stream end" && l.port === echo.port)).toMatchObject({ identity: "c-program", profile: "narrow" });
      expect(JSON.stringify(lines)).not.toContain(token);
      expectAllAnswered(c);
      c.close();
    } finally {
      await authed.stop();
      other.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("UDP drops under the same rules as other adapters", () => {
  test("over the bandwidth limit a datagram is dropped and counted; sendto still reports it sent", async () => {
    const limited = await startServer({
      policy: parsePolicy(`[network]\nallow = ["127.0.0.1"]\ndeny = []\nmax_bandwidth_mbps = 0.1\n`, "bw.toml"),
    });
    const quietPeer = await udpPeer("127.0.0.1", false);
    try {
      const c = await PosixClient.open(`ws://127.0.0.1:${limited.port}/posix/`);
      const m = limited.handler.ctx.metrics;
      const before = m.udpDrops.get("bandwidth") ?? 0;
      const fd = await c.fd(AF.INET, SOCK.DGRAM);
      const n = 6;
      for (let i = 0; i < n; i++) expect((await c.call(req.sendto(fd, new Uint8Array(8000), sockaddr("127.0.0.1", quietPeer.port)))).ret).toBe(8000);
      // 0.1 Mbit/s is a 12 500-byte bucket: one 8000-byte datagram fits, the rest are dropped.
      await waitFor(() => quietPeer.got.length + (m.udpDrops.get("bandwidth") ?? 0) - before === n, {
        what: "every datagram sent or counted as dropped",
        detail: () => ({ got: quietPeer.got.length, dropped: (m.udpDrops.get("bandwidth") ?? 0) - before }),
      });
      expect((m.udpDrops.get("bandwidth") ?? 0) - before).toBeGreaterThanOrEqual(n - 2);
      expectAllAnswered(c);
      c.close();
    } finally {
      quietPeer.stop();
      await limited.stop();
    }
  });

  test("toward a client whose WebSocket is above the high watermark, datagrams are dropped and counted", async () => {
    const payload = 48 * 1024 * 1024;
    const source = sourceServer(payload);
    const ws = await rawWebSocket(srv.port, "/posix/");
    try {
      ws.pause(); // read nothing the server sends
      const frame = (callId: number, m: Uint8Array) => {
        const f = m.slice();
        new DataView(f.buffer).setInt32(0, callId, true);
        ws.sendBinary(f);
      };
      frame(1, req.socket(AF.INET, SOCK.STREAM)); // fd 3
      frame(2, req.connect(3, sockaddr("127.0.0.1", source.port)));
      // recv calls, a window each: their replies pile up toward the client that reads nothing.
      // A few at a time, to stop between the high watermark (1 MiB) and the point past which
      // a client that does not read is not read either (4 high watermarks).
      const sessionWs = () => [...srv.handler.sockets].find((w) => w.data.adapter?.constructor.name === "PosixAdapter" && w.getBufferedAmount() > 0);
      const queued = () => sessionWs()?.getBufferedAmount() ?? 0;
      let callId = 10;
      for (let batch = 0; queued() <= 1024 * 1024; batch++) {
        if (batch === 64) throw new Error(`the client's WebSocket never passed the high watermark (${queued()} bytes queued)`);
        for (let i = 0; i < 8; i++) frame(callId++, req.recv(3, WINDOW, MSG.WAITALL));
        await waitForSteady(queued, { what: "the replies to queue", quietMs: 200, timeoutMs: 20_000 });
      }
      expect(queued()).toBeLessThan(4 * 1024 * 1024);
      const before = metrics().udpDrops.get("backpressure") ?? 0;
      const got = udpEchoPeer.got.length;
      frame(1000, req.socket(AF.INET, SOCK.DGRAM)); // fd 4
      for (let i = 0; i < 3; i++) frame(1001 + i, req.sendto(4, te.encode(`hw${i}`), sockaddr("127.0.0.1", udpEchoPeer.port)));
      await waitFor(() => udpEchoPeer.got.length === got + 3, "the three datagrams at the echo peer");
      await waitFor(() => (metrics().udpDrops.get("backpressure") ?? 0) - before === 3, {
        what: "their echoes dropped toward the full client, counted",
        detail: () => (metrics().udpDrops.get("backpressure") ?? 0) - before,
      });
    } finally {
      ws.close();
      source.stop();
    }
  }, 40_000);
});

describe("a client that sends requests and never reads their replies", () => {
  test("repeated MSG_PEEK recvs: the replies queued toward it stay bounded; all are answered once it reads", async () => {
    const source = sourceServer(4 * 1024 * 1024);
    const ws = await rawWebSocket(srv.port, "/posix/");
    try {
      const frame = (callId: number, m: Uint8Array) => {
        const f = m.slice();
        new DataView(f.buffer).setInt32(0, callId, true);
        ws.sendBinary(f);
      };
      ws.pause(); // read nothing the server sends
      frame(1, req.socket(AF.INET, SOCK.STREAM)); // fd 3
      frame(2, req.connect(3, sockaddr("127.0.0.1", source.port)));
      // Each ~20-byte request asks for a full window back (the inbox is full and stays so), and
      // waits for it, so at most 1024 of them (the parked-call limit) would be let through.
      const peeks = 1000;
      for (let i = 0; i < peeks; i++) frame(10 + i, req.recv(3, WINDOW, MSG.PEEK | MSG.WAITALL));
      const posixSockets = () => [...srv.handler.sockets].filter((w) => w.data.adapter?.constructor.name === "PosixAdapter");
      const queued = () => Math.max(0, ...posixSockets().map((w) => w.getBufferedAmount()));
      let most = 0;
      const steady = await waitForSteady(
        () => {
          most = Math.max(most, queued());
          return most;
        },
        { what: "the replies queued toward the client to stop growing", quietMs: 500, timeoutMs: 20_000 },
      );
      // Unbounded, ~62 MiB of replies would queue (or the session would end at Bun's limit).
      // Bounded: 4 high watermarks (4 MiB), plus the reply that crossed it.
      expect(steady).toBeGreaterThan(1024 * 1024);
      expect(steady).toBeLessThan(4 * 1024 * 1024 + 2 * WINDOW);
      // Once it reads, every request is answered: the session was held, not ended.
      ws.resume();
      await waitFor(() => ws.received() >= peeks * WINDOW, {
        what: "every MSG_PEEK answered once the client reads",
        timeoutMs: 30_000,
        detail: () => ({ received: ws.received(), expected: peeks * WINDOW }),
      });
      expect(posixSockets().length).toBeGreaterThan(0);
    } finally {
      ws.close();
      source.stop();
    }
  }, 60_000);
});

describe("bounded buffers under a flooding target", () => {
  let child: Child;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "wasmnet-posix-"));
    const file = join(dir, "policy.toml");
    writeFileSync(file, `[network]\nallow = ["127.0.0.1"]\ndeny = []\nmax_bandwidth_mbps = 0\n`);
    child = await spawnServer(["--policy", file]);
  });
  afterAll(async () => {
    await child?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a program that does not recv: the target is not read once the buffer is full; RSS stays flat", async () => {
    // The target writes as fast as it is read and counts what it got rid of.
    let pushed = 0;
    const chunk = new Uint8Array(256 * 1024).fill(0x5a);
    const pump = (s: Socket<undefined>) => {
      while (pushed < 1024 * 1024 * 1024) {
        const n = s.write(chunk);
        if (n <= 0) return;
        pushed += n;
        if (n < chunk.length) return;
      }
    };
    const flood = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: pump, drain: pump, data() {}, error() {} } });
    const c = await PosixClient.open(`ws://127.0.0.1:${child.port}/posix/`);
    try {
      const before = child.rssBytes();
      const fd = await connected(c, flood.port);
      const stalledAt = await waitForSteady(() => pushed, { what: "the flood to stall", quietMs: 500, timeoutMs: 20_000 });
      await Bun.sleep(1000); // stalled means it stays stalled: a second more in which it must not move on
      // The default receive buffer (1 MiB) plus the kernel's socket buffers, not a stream into RAM.
      expect(pushed - stalledAt).toBeLessThan(1024 * 1024);
      expect(pushed).toBeLessThan(48 * 1024 * 1024);
      expect(child.rssBytes() - before).toBeLessThan(64 * 1024 * 1024);
      // recv makes room, and the target is read again.
      let received = 0;
      while (pushed < stalledAt + 32 * 1024 * 1024) {
        const r = await c.call(req.recv(fd, 1024 * 1024));
        expect(r.ret).toBeGreaterThan(0);
        expect(r.ret).toBeLessThanOrEqual(1024 * 1024);
        received += r.ret;
      }
      expect(received).toBeGreaterThan(16 * 1024 * 1024);
      expectAllAnswered(c);
    } finally {
      c.close();
      flood.stop(true);
    }
  }, 60_000);
});
