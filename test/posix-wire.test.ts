// Wire-format conformance with Emscripten's real client stub: test/fixtures/posix/posix-client.c,
// built by emcc 3.1.6 with -sPROXY_POSIX_SOCKETS, runs in headless Chromium and forwards its
// socket calls to a small fake peer in this file. The fake decodes every request with
// src/protocol/posix.ts and answers with its encoders, without touching the network (a connect
// "succeeds" into an in-memory echo). If a layout disagreed, the program would see wrong data,
// log "Received corrupt WebSocket result message" or hang; it prints OK for every check instead.
// The end-to-end run against the real /posix/ endpoint belongs to the adapter's tests.
// Without emcc or Chromium the tests are skipped (where CI requires them, they fail).
import { afterAll, beforeAll, describe, expect } from "bun:test";
import type { ServerWebSocket } from "bun";
import {
  AF,
  ERRNO,
  IPPROTO,
  SO,
  SOCK,
  SOL_SOCKET,
  decodePosixRequest,
  encodeAcceptReply,
  encodeErrorReply,
  encodeFailureReply,
  encodeGetaddrinfoError,
  encodeGetaddrinfoReply,
  encodeGetsockoptReply,
  encodeRecvReply,
  encodeRecvfromReply,
  encodeRetReply,
  encodeSocknameReply,
  optionInt,
  sockaddrOf,
  EAI,
  type PosixDecodeFailure,
  type PosixRequest,
  type Sockaddr,
} from "../src/protocol/posix.ts";
import { launchBrowser, type Browser } from "./helpers/browser.ts";
import { needing } from "./helpers/components.ts";
import { compilePosixClient, runPosixProgram, servePage, type Compiled, type PageServer } from "./helpers/emscripten.ts";

const needs = needing("emcc", "chromium");

/** Ports with a scripted outcome in the fake peer. */
const REFUSED_PORT = 1;
const DENIED_PORT = 2;
/** The port the fake reports for a socket bound to port 0. */
const EPHEMERAL_PORT = 43210;
const GREETING = "hello from the test\n";

interface FakeSocket {
  type: number;
  /** Stream bytes the program will recv (an echo of what it sent, or the greeting). */
  inbox: Uint8Array[];
  /** Datagrams the program will recvfrom: each echoed back from where it was sent. */
  datagrams: Array<{ data: Uint8Array; from: Sockaddr }>;
  bound: Sockaddr | null;
  /** Bytes the program sent on an accepted socket. */
  sent: string;
  accepted: boolean;
}

/** A peer that answers the stub with the codec alone: no sockets, no policy, no network. */
class FakePeer {
  readonly requests: Array<{ call: string; bytes: number }> = [];
  readonly failures: PosixDecodeFailure[] = [];
  readonly sockets = new Map<number, FakeSocket>();
  acceptedSent = "";
  private nextFd = 3;

  answer(msg: Uint8Array): Uint8Array | null {
    const d = decodePosixRequest(msg);
    if (!d.ok) {
      this.failures.push(d);
      return encodeFailureReply(d);
    }
    this.requests.push({ call: d.request.call, bytes: msg.length });
    return this.reply(d.request);
  }

  private newSocket(type: number, accepted = false): number {
    const fd = this.nextFd++;
    this.sockets.set(fd, { type, inbox: accepted ? [new TextEncoder().encode(GREETING)] : [], datagrams: [], bound: null, sent: "", accepted });
    return fd;
  }

  private reply(r: PosixRequest): Uint8Array {
    if (r.call === "socket") return encodeRetReply(r.callId, this.newSocket(r.baseType));
    if (r.call === "getaddrinfo") return this.getaddrinfo(r);
    if (r.call === "socketpair") return encodeErrorReply(2, r.callId, ERRNO.EOPNOTSUPP);
    const s = this.sockets.get(r.fd);
    const fn = { shutdown: 3, bind: 4, connect: 5, listen: 6, accept: 7, getsockname: 8, getpeername: 9, send: 10, recv: 11, sendto: 12, recvfrom: 13, getsockopt: 16, setsockopt: 17 }[r.call];
    if (!s) return encodeErrorReply(fn, r.callId, ERRNO.EBADF);
    switch (r.call) {
      case "shutdown":
        if (s.accepted) this.acceptedSent = s.sent;
        this.sockets.delete(r.fd);
        return encodeRetReply(r.callId, 0);
      case "connect":
        if (r.addr.port === REFUSED_PORT) return encodeErrorReply(fn, r.callId, ERRNO.ECONNREFUSED);
        if (r.addr.port === DENIED_PORT) return encodeErrorReply(fn, r.callId, ERRNO.EACCES);
        return encodeRetReply(r.callId, 0);
      case "bind":
        s.bound = r.addr.port === 0 ? { ...r.addr, port: EPHEMERAL_PORT } : r.addr;
        return encodeRetReply(r.callId, 0);
      case "listen":
        return encodeRetReply(r.callId, 0);
      case "accept":
        return encodeAcceptReply(r.callId, this.newSocket(SOCK.STREAM, true), { family: "ipv4", address: "127.0.0.1", port: 50000 });
      case "getsockname":
        return s.bound ? encodeSocknameReply(r.callId, s.bound) : encodeErrorReply(fn, r.callId, ERRNO.EINVAL);
      case "getpeername":
        return encodeErrorReply(fn, r.callId, ERRNO.ENOTCONN);
      case "send":
        if (s.accepted) s.sent += new TextDecoder().decode(r.data);
        else s.inbox.push(r.data.slice());
        return encodeRetReply(r.callId, r.data.length);
      case "recv": {
        const head = s.inbox.shift();
        if (!head) return encodeRecvReply(r.callId, new Uint8Array(0));
        if (head.length > r.maxlen) s.inbox.unshift(head.subarray(r.maxlen));
        return encodeRecvReply(r.callId, head.subarray(0, r.maxlen));
      }
      case "sendto":
        if (!r.dest) return encodeErrorReply(fn, r.callId, ERRNO.EDESTADDRREQ);
        s.datagrams.push({ data: r.data.slice(), from: r.dest });
        return encodeRetReply(r.callId, r.data.length);
      case "recvfrom": {
        const dg = s.datagrams.shift();
        if (!dg) return encodeErrorReply(fn, r.callId, ERRNO.EAGAIN);
        return encodeRecvfromReply(r.callId, dg.data.subarray(0, r.maxlen), dg.from);
      }
      case "getsockopt":
        if (r.level === SOL_SOCKET && r.optname === SO.ERROR) return encodeGetsockoptReply(r.callId, optionInt(0));
        return encodeErrorReply(fn, r.callId, ERRNO.ENOPROTOOPT);
      case "setsockopt":
        return encodeRetReply(r.callId, 0);
    }
  }

  private getaddrinfo(r: Extract<PosixRequest, { call: "getaddrinfo" }>): Uint8Array {
    const port = Number(r.service ?? "0");
    const addrs = r.node === "localhost" ? [sockaddrOf("127.0.0.1", port)!, sockaddrOf("::1", port)!] : [sockaddrOf(r.node ?? "", port)].filter((a) => a !== null);
    const family = r.hints?.family ?? AF.UNSPEC;
    const wanted = addrs.filter((a) => family === AF.UNSPEC || (family === AF.INET) === (a.family === "ipv4"));
    if (wanted.length === 0) return encodeGetaddrinfoError(r.callId, EAI.NONAME);
    const socktype = r.hints?.socktype || SOCK.STREAM;
    const protocol = socktype === SOCK.DGRAM ? IPPROTO.UDP : IPPROTO.TCP;
    return encodeGetaddrinfoReply(r.callId, wanted.map((addr) => ({ socktype, protocol, addr })), r.node ?? "");
  }
}

let compiled: Compiled;
let page: PageServer;
let browser: Browser;
let fake: FakePeer;
let bridge: ReturnType<typeof Bun.serve<undefined>>;

/** Runs the program against the fake peer (see runPosixProgram). */
const runProgram = (args: Record<string, string>) => runPosixProgram(browser, page, `ws://127.0.0.1:${bridge.port}/posix/`, args);

describe("Emscripten 3.1.6 stub <-> posix codec, byte for byte", () => {
  beforeAll(async () => {
    if (!needs.available) return;
    compiled = compilePosixClient();
    page = servePage(compiled);
    bridge = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(req, server) {
        if (new URL(req.url).pathname === "/posix/" && server.upgrade(req)) return undefined;
        return new Response("not a WebSocket", { status: 400 });
      },
      websocket: {
        message(ws: ServerWebSocket<undefined>, msg) {
          if (typeof msg === "string") return;
          const out = fake.answer(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength));
          if (out) ws.sendBinary(out);
        },
      },
    });
    browser = await launchBrowser();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    page?.stop();
    bridge?.stop(true);
  });

  needs.test(
    "IPv4: TCP, UDP, getaddrinfo, bind/listen/getsockname/accept, ECONNREFUSED and EACCES as the program's own errno",
    async () => {
      fake = new FakePeer();
      const { lines, problems } = await runProgram({
        tcp: "127.0.0.1:7",
        udp: "127.0.0.1:9",
        resolve: "localhost",
        numeric: "127.0.0.1",
        listen: "0",
        refused: `127.0.0.1:${REFUSED_PORT}`,
        denied: `127.0.0.1:${DENIED_PORT}`,
      });
      expect(lines).toEqual([
        "OK tcp",
        "OK udp",
        "OK resolve",
        "OK numeric",
        `LISTENING ${EPHEMERAL_PORT}`,
        "OK listen",
        "OK refused",
        "OK denied",
        "DONE",
      ]);
      expect(problems).toEqual([]);
      expect(fake.failures).toEqual([]);
      expect(fake.acceptedSent).toBe(`echo: ${GREETING}`);
      // The stub sent each call in the layout the codec expects, at the size docs/posix.md gives.
      const sizes: Record<string, number[]> = {};
      for (const r of fake.requests) (sizes[r.call] ??= []).includes(r.bytes) || sizes[r.call]!.push(r.bytes);
      expect(sizes).toEqual({
        socket: [20],
        connect: [32],
        setsockopt: [28],
        getsockopt: [24],
        send: [20 + 25, 20 + `echo: ${GREETING}`.length],
        recv: [20],
        shutdown: [16],
        sendto: [24 + 256 + 27],
        recvfrom: [24],
        getaddrinfo: [2204],
        bind: [32],
        getsockname: [16],
        listen: [16],
        accept: [16],
      });
      expect(fake.sockets.size).toBe(0);
    },
    90_000,
  );

  needs.test(
    "IPv6: 28-byte addresses through connect, sendto/recvfrom and getaddrinfo",
    async () => {
      fake = new FakePeer();
      const { lines, problems } = await runProgram({
        tcp: "[::1]:7",
        udp: "[::1]:9",
        numeric: "::1",
        refused: `[::1]:${REFUSED_PORT}`,
      });
      expect(lines).toEqual(["OK tcp", "OK udp", "OK numeric", "OK refused", "DONE"]);
      expect(problems).toEqual([]);
      expect(fake.failures).toEqual([]);
      const connects = fake.requests.filter((r) => r.call === "connect").map((r) => r.bytes);
      expect(new Set(connects)).toEqual(new Set([16 + 28]));
    },
    90_000,
  );
});
