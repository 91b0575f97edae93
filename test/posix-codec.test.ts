// The PROXY_POSIX_SOCKETS codec against layouts written out by hand from Emscripten 3.1.6's
// client stub (docs/posix.md): requests are built byte by byte here, replies are checked at
// their byte offsets and read back the way the stub reads them.
import { describe, expect, test } from "bun:test";
import {
  AF,
  AI,
  EAI,
  ERRNO,
  GAI_REQUEST_BYTES,
  IPPROTO,
  MSG,
  POSIX_CALL,
  SO,
  SOCK,
  SOL_SOCKET,
  decodePosixRequest,
  decodeSockaddr,
  encodeAcceptReply,
  encodeErrorReply,
  encodeFailureReply,
  encodeGetaddrinfoError,
  encodeGetaddrinfoReply,
  encodeGetsockoptReply,
  encodeRecvReply,
  encodeRecvfromReply,
  encodeRetReply,
  encodeSockaddr,
  encodeSocknameReply,
  formatIpv6,
  minReplyBytes,
  optionInt,
  optionTimeval,
  parseIpv6,
  posixEai,
  posixErrno,
  readOptionInt,
  readOptionTimeval,
  sockaddrOf,
  type PosixDecodeFailure,
  type PosixDecoded,
  type PosixRequest,
} from "../src/protocol/posix.ts";
import { ERROR_CODES } from "../src/protocol/constants.ts";

// ---- request bytes, laid out as the stub's structs (every field i32/u32 little-endian) ----

class Bytes {
  private parts: number[] = [];
  i32(...vs: number[]): this {
    for (const v of vs) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setInt32(0, v | 0, true);
      this.parts.push(...b);
    }
    return this;
  }
  u32(...vs: number[]): this {
    for (const v of vs) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, v >>> 0, true);
      this.parts.push(...b);
    }
    return this;
  }
  raw(b: ArrayLike<number>): this {
    this.parts.push(...Array.from(b));
    return this;
  }
  zeros(n: number): this {
    for (let i = 0; i < n; i++) this.parts.push(0);
    return this;
  }
  text(s: string, field: number): this {
    const b = new TextEncoder().encode(s);
    this.raw(b).zeros(field - b.length);
    return this;
  }
  get bytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}
const req = (callId: number, fn: number) => new Bytes().i32(callId, fn);

/** struct sockaddr_in as the program lays it out: family LE, port BE, address, 8 zero bytes. */
const sin = (port: number, ip: [number, number, number, number]) => [AF.INET, 0, port >> 8, port & 0xff, ...ip, 0, 0, 0, 0, 0, 0, 0, 0];
/** struct sockaddr_in6: family LE, port BE, flowinfo (network order), 16 address bytes, scope id LE. */
const sin6 = (port: number, addr: number[], flowinfo = 0, scope = 0) => [
  AF.INET6,
  0,
  port >> 8,
  port & 0xff,
  (flowinfo >>> 24) & 0xff,
  (flowinfo >>> 16) & 0xff,
  (flowinfo >>> 8) & 0xff,
  flowinfo & 0xff,
  ...addr,
  scope & 0xff,
  (scope >>> 8) & 0xff,
  (scope >>> 16) & 0xff,
  (scope >>> 24) & 0xff,
];
const LOOP6 = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

function decoded(msg: Uint8Array): PosixRequest {
  const d = decodePosixRequest(msg);
  if (!d.ok) throw new Error(`expected a request, got failure: ${d.reason}`);
  return d.request;
}
function failed(msg: Uint8Array): PosixDecodeFailure {
  const d: PosixDecoded = decodePosixRequest(msg);
  if (d.ok) throw new Error(`expected a failure, got ${JSON.stringify(d.request)}`);
  return d;
}

// ---- replies, read the way the stub reads them ----

const le = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
const header = (b: Uint8Array) => ({ callId: le(b).getInt32(0, true), ret: le(b).getInt32(4, true), errno: le(b).getInt32(8, true) });

describe("requests: every call's layout", () => {
  test("socket and socketpair: domain, type, protocol; type flag bits split out", () => {
    expect(decoded(req(7, POSIX_CALL.socket).i32(AF.INET, SOCK.STREAM, 0).bytes)).toEqual({
      call: "socket",
      callId: 7,
      domain: 2,
      type: 1,
      baseType: 1,
      nonblock: false,
      protocol: 0,
    });
    const type = SOCK.DGRAM | SOCK.NONBLOCK | SOCK.CLOEXEC;
    expect(decoded(req(8, POSIX_CALL.socket).i32(AF.INET6, type, IPPROTO.UDP).bytes)).toMatchObject({ domain: 10, type, baseType: 2, nonblock: true, protocol: 17 });
    expect(decoded(req(9, POSIX_CALL.socketpair).i32(AF.UNIX, SOCK.STREAM, 0).bytes)).toMatchObject({ call: "socketpair", callId: 9, domain: 1 });
  });

  test("shutdown, listen: fd and one int", () => {
    expect(decoded(req(1, POSIX_CALL.shutdown).i32(3, 2).bytes)).toEqual({ call: "shutdown", callId: 1, fd: 3, how: 2 });
    expect(decoded(req(2, POSIX_CALL.listen).i32(4, 128).bytes)).toEqual({ call: "listen", callId: 2, fd: 4, backlog: 128 });
  });

  test("bind and connect: fd, u32 addrlen, the sockaddr (IPv4 and IPv6)", () => {
    const c = decoded(req(11, POSIX_CALL.connect).i32(3).u32(16).raw(sin(8080, [127, 0, 0, 1])).bytes);
    expect(c).toEqual({ call: "connect", callId: 11, fd: 3, addrlen: 16, addr: { family: "ipv4", address: "127.0.0.1", port: 8080 } });
    const b = decoded(req(12, POSIX_CALL.bind).i32(4).u32(28).raw(sin6(443, LOOP6, 0x12345, 7)).bytes);
    expect(b).toEqual({ call: "bind", callId: 12, fd: 4, addrlen: 28, addr: { family: "ipv6", address: "::1", port: 443, flowinfo: 0x12345, scopeId: 7 } });
  });

  test("connect with addrlen = sizeof(sockaddr_storage) reads the family's struct and ignores the rest", () => {
    const storage = [...sin(53, [10, 1, 2, 3]), ...new Array(128 - 16).fill(0xee)];
    expect(decoded(req(1, POSIX_CALL.connect).i32(3).u32(128).raw(storage).bytes)).toMatchObject({
      addrlen: 128,
      addr: { family: "ipv4", address: "10.1.2.3", port: 53 },
    });
  });

  test("accept, getsockname, getpeername: fd, u32 address capacity", () => {
    expect(decoded(req(5, POSIX_CALL.accept).i32(3).u32(128).bytes)).toEqual({ call: "accept", callId: 5, fd: 3, addrCapacity: 128 });
    expect(decoded(req(6, POSIX_CALL.getsockname).i32(3).u32(256).bytes)).toEqual({ call: "getsockname", callId: 6, fd: 3, addrCapacity: 256 });
    expect(decoded(req(7, POSIX_CALL.getpeername).i32(3).u32(256).bytes)).toEqual({ call: "getpeername", callId: 7, fd: 3, addrCapacity: 256 });
  });

  test("getsockname with a capacity over 256: the stub appends stack bytes, which are ignored", () => {
    // sizeof(request) + 300 - 256 = 60 bytes; only the first 16 are the request.
    const msg = req(6, POSIX_CALL.getsockname).i32(3).u32(300).raw(new Array(44).fill(0xab)).bytes;
    expect(decoded(msg)).toEqual({ call: "getsockname", callId: 6, fd: 3, addrCapacity: 300 });
  });

  test("send: fd, u32 length, flags, the bytes; recv: fd, u32 maxlen, flags", () => {
    const s = decoded(req(3, POSIX_CALL.send).i32(5).u32(5).i32(MSG.NOSIGNAL).raw([104, 101, 108, 108, 111]).bytes);
    expect(s).toMatchObject({ call: "send", callId: 3, fd: 5, flags: MSG.NOSIGNAL });
    expect(new TextDecoder().decode((s as { data: Uint8Array }).data)).toBe("hello");
    expect(decoded(req(3, POSIX_CALL.send).i32(5).u32(0).i32(0).bytes)).toMatchObject({ data: new Uint8Array(0) });
    expect(decoded(req(4, POSIX_CALL.recv).i32(5).u32(65536).i32(MSG.DONTWAIT | MSG.PEEK).bytes)).toEqual({
      call: "recv",
      callId: 4,
      fd: 5,
      maxlen: 65536,
      flags: MSG.DONTWAIT | MSG.PEEK,
    });
  });

  test("sendto: fd, u32 length, flags, u32 dest_len, a fixed 256-byte address field, the bytes", () => {
    const field = [...sin(5353, [127, 0, 0, 1]), ...new Array(256 - 16).fill(0)];
    const msg = req(9, POSIX_CALL.sendto).i32(6).u32(3).i32(0).u32(16).raw(field).raw([1, 2, 3]).bytes;
    expect(msg.length).toBe(24 + 256 + 3);
    const r = decoded(msg) as Extract<PosixRequest, { call: "sendto" }>;
    expect(r).toMatchObject({ call: "sendto", callId: 9, fd: 6, flags: 0, dest: { family: "ipv4", address: "127.0.0.1", port: 5353 } });
    expect(Array.from(r.data)).toEqual([1, 2, 3]);
    const v6 = [...sin6(9, LOOP6), ...new Array(256 - 28).fill(0)];
    expect(decoded(req(9, POSIX_CALL.sendto).i32(6).u32(0).i32(0).u32(28).raw(v6).bytes)).toMatchObject({ dest: { family: "ipv6", address: "::1", port: 9 } });
  });

  test("sendto with dest_len 0 (connected socket) has no destination", () => {
    const r = decoded(req(9, POSIX_CALL.sendto).i32(6).u32(2).i32(0).u32(0).zeros(256).raw([7, 7]).bytes);
    expect(r).toMatchObject({ call: "sendto", dest: null });
  });

  test("recvfrom: fd, u32 maxlen, flags, u32 address capacity", () => {
    expect(decoded(req(10, POSIX_CALL.recvfrom).i32(6).u32(1500).i32(0).u32(128).bytes)).toEqual({
      call: "recvfrom",
      callId: 10,
      fd: 6,
      maxlen: 1500,
      flags: 0,
      addrCapacity: 128,
    });
  });

  test("getsockopt: fd, level, optname, u32 optlen; setsockopt: fd, level, optname, i32 optlen, value", () => {
    expect(decoded(req(1, POSIX_CALL.getsockopt).i32(3, SOL_SOCKET, SO.ERROR).u32(4).bytes)).toEqual({
      call: "getsockopt",
      callId: 1,
      fd: 3,
      level: 1,
      optname: 4,
      optlen: 4,
    });
    const s = decoded(req(2, POSIX_CALL.setsockopt).i32(3, IPPROTO.TCP, 1, 4).i32(1).bytes) as Extract<PosixRequest, { call: "setsockopt" }>;
    expect(s).toMatchObject({ call: "setsockopt", callId: 2, fd: 3, level: 6, optname: 1 });
    expect(readOptionInt(s.value)).toBe(1);
    const t = decoded(req(3, POSIX_CALL.setsockopt).i32(3, SOL_SOCKET, SO.RCVTIMEO, 8).i32(2, 500_000).bytes) as Extract<PosixRequest, { call: "setsockopt" }>;
    expect(readOptionTimeval(t.value)).toBe(2500);
  });

  test("getaddrinfo: char node[2048], char service[128], hasHints and four hint fields: 2204 bytes", () => {
    const msg = req(20, POSIX_CALL.getaddrinfo)
      .text("localhost", 2048)
      .text("8080", 128)
      .i32(1, AI.PASSIVE | AI.NUMERICHOST, AF.INET, SOCK.STREAM, IPPROTO.TCP).bytes;
    expect(msg.length).toBe(2204);
    expect(GAI_REQUEST_BYTES).toBe(2204);
    expect(decoded(msg)).toEqual({
      call: "getaddrinfo",
      callId: 20,
      node: "localhost",
      service: "8080",
      hints: { flags: AI.PASSIVE | AI.NUMERICHOST, family: 2, socktype: 1, protocol: 6 },
    });
  });

  test("getaddrinfo without hints (hint fields ignored) and with a NULL node", () => {
    const msg = req(21, POSIX_CALL.getaddrinfo).text("", 2048).text("53", 128).i32(0, 99, 99, 99, 99).bytes;
    expect(decoded(msg)).toEqual({ call: "getaddrinfo", callId: 21, node: null, service: "53", hints: null });
    const long = "a".repeat(2047);
    expect(decoded(req(22, POSIX_CALL.getaddrinfo).text(long, 2048).text("", 128).i32(0, 0, 0, 0, 0).bytes)).toMatchObject({ node: long, service: null });
  });

  test("sendmsg, recvmsg, getnameinfo (never sent by the stub) are ENOSYS with their callId", () => {
    for (const fn of [POSIX_CALL.sendmsg, POSIX_CALL.recvmsg, POSIX_CALL.getnameinfo]) {
      const f = failed(req(30, fn).i32(3, 0).bytes);
      expect(f).toMatchObject({ callId: 30, fn, errno: ERRNO.ENOSYS });
      expect(header(encodeFailureReply(f)!)).toEqual({ callId: 30, ret: -1, errno: ERRNO.ENOSYS });
    }
  });
});

describe("requests: malformed input decodes to a failure that can be answered", () => {
  test("0-3 byte messages have no callId (nothing can be answered)", () => {
    for (let n = 0; n < 4; n++) {
      const f = failed(new Uint8Array(n).fill(1));
      expect(f).toMatchObject({ callId: null, fn: null, errno: ERRNO.EINVAL });
      expect(encodeFailureReply(f)).toBeNull();
    }
  });

  test("4-7 byte messages keep the callId and are answered with the longest minimum (2064 bytes)", () => {
    for (let n = 4; n < 8; n++) {
      const msg = new Uint8Array(n);
      new DataView(msg.buffer).setInt32(0, 4242, true);
      const f = failed(msg);
      expect(f).toMatchObject({ callId: 4242, fn: null, errno: ERRNO.EINVAL });
      const r = encodeFailureReply(f)!;
      expect(r.length).toBe(2064);
      expect(header(r)).toEqual({ callId: 4242, ret: -1, errno: ERRNO.EINVAL });
    }
  });

  test("unknown function 99 (and 0, 20, -1): ENOSYS, reply padded to 2064 bytes", () => {
    for (const fn of [99, 0, 20, -1]) {
      const f = failed(req(77, fn).i32(1, 2, 3).bytes);
      expect(f).toMatchObject({ callId: 77, fn, call: null, errno: ERRNO.ENOSYS });
      const r = encodeFailureReply(f)!;
      expect(r.length).toBe(2064);
      expect(header(r)).toEqual({ callId: 77, ret: -1, errno: ERRNO.ENOSYS });
    }
  });

  test("every fixed-size call one byte short or long is EINVAL with its callId", () => {
    const fixed: Array<[number, number]> = [
      [POSIX_CALL.socket, 20],
      [POSIX_CALL.socketpair, 20],
      [POSIX_CALL.shutdown, 16],
      [POSIX_CALL.listen, 16],
      [POSIX_CALL.accept, 16],
      [POSIX_CALL.recv, 20],
      [POSIX_CALL.recvfrom, 24],
      [POSIX_CALL.getsockopt, 24],
      [POSIX_CALL.getaddrinfo, 2204],
    ];
    for (const [fn, size] of fixed) {
      for (const n of [size - 1, size + 1, 8]) {
        const msg = new Uint8Array(n);
        new DataView(msg.buffer).setInt32(0, 55, true);
        new DataView(msg.buffer).setInt32(4, fn, true);
        const f = failed(msg);
        expect(f.callId).toBe(55);
        expect(f.fn).toBe(fn);
        expect(f.errno).toBe(ERRNO.EINVAL);
        expect(encodeFailureReply(f)!.length).toBeGreaterThanOrEqual(minReplyBytes(fn));
      }
    }
  });

  test("getsockname/getpeername shorter than 16 bytes (the stub's capacity < 256 bug) are EINVAL, 16-byte reply", () => {
    for (const fn of [POSIX_CALL.getsockname, POSIX_CALL.getpeername]) {
      const f = failed(req(3, fn).i32(3).bytes);
      expect(f).toMatchObject({ callId: 3, errno: ERRNO.EINVAL });
      const r = encodeFailureReply(f)!;
      expect(r.length).toBe(16);
      expect(header(r)).toEqual({ callId: 3, ret: -1, errno: ERRNO.EINVAL });
    }
  });

  test("length fields that disagree with the message: send, sendto, setsockopt, connect", () => {
    expect(failed(req(1, POSIX_CALL.send).i32(3).u32(10).i32(0).raw([1, 2, 3]).bytes)).toMatchObject({ callId: 1, errno: ERRNO.EINVAL });
    expect(failed(req(1, POSIX_CALL.send).i32(3).u32(1).i32(0).raw([1, 2, 3]).bytes)).toMatchObject({ errno: ERRNO.EINVAL });
    expect(failed(req(1, POSIX_CALL.send).i32(3).u32(0xffffffff).i32(0).bytes)).toMatchObject({ errno: ERRNO.EINVAL });
    expect(failed(req(2, POSIX_CALL.sendto).i32(3).u32(5).i32(0).u32(16).raw(sin(1, [1, 1, 1, 1])).zeros(240).raw([1]).bytes)).toMatchObject({ errno: ERRNO.EINVAL });
    expect(failed(req(2, POSIX_CALL.sendto).i32(3).u32(0).i32(0).u32(16).raw(sin(1, [1, 1, 1, 1])).bytes)).toMatchObject({ errno: ERRNO.EINVAL });
    expect(failed(req(3, POSIX_CALL.setsockopt).i32(3, 1, 2, 4).raw([1, 0]).bytes)).toMatchObject({ errno: ERRNO.EINVAL });
    expect(failed(req(3, POSIX_CALL.setsockopt).i32(3, 1, 2, -4).bytes)).toMatchObject({ errno: ERRNO.EINVAL });
    expect(failed(req(4, POSIX_CALL.connect).i32(3).u32(16).raw(sin(1, [1, 1, 1, 1]).slice(0, 10)).bytes)).toMatchObject({ errno: ERRNO.EINVAL });
    expect(failed(req(4, POSIX_CALL.connect).i32(3).bytes)).toMatchObject({ callId: 4, errno: ERRNO.EINVAL });
  });

  test("addrlen 4096 (connect, bind) and dest_len 4096 / 300 (sendto) are EINVAL", () => {
    const big = new Array(4096).fill(0);
    big[0] = AF.INET;
    expect(failed(req(1, POSIX_CALL.connect).i32(3).u32(4096).raw(big).bytes)).toMatchObject({ callId: 1, fn: 5, errno: ERRNO.EINVAL });
    expect(failed(req(2, POSIX_CALL.bind).i32(3).u32(4096).raw(big).bytes)).toMatchObject({ callId: 2, fn: 4, errno: ERRNO.EINVAL });
    // The addrlen says 4096 but only 16 address bytes follow.
    expect(failed(req(3, POSIX_CALL.connect).i32(3).u32(4096).raw(sin(80, [1, 2, 3, 4])).bytes)).toMatchObject({ errno: ERRNO.EINVAL });
    for (const destlen of [4096, 300, 129]) {
      expect(failed(req(4, POSIX_CALL.sendto).i32(3).u32(0).i32(0).u32(destlen).raw(sin(80, [1, 2, 3, 4])).zeros(240).bytes)).toMatchObject({
        callId: 4,
        errno: ERRNO.EINVAL,
      });
    }
  });

  test("bad address families are EAFNOSUPPORT; short addresses EINVAL", () => {
    const unix = [AF.UNIX, 0, ...new Array(14).fill(0x41)];
    expect(failed(req(1, POSIX_CALL.connect).i32(3).u32(16).raw(unix).bytes)).toMatchObject({ callId: 1, errno: ERRNO.EAFNOSUPPORT });
    expect(failed(req(1, POSIX_CALL.connect).i32(3).u32(16).zeros(16).bytes)).toMatchObject({ errno: ERRNO.EAFNOSUPPORT });
    // A family written big-endian (0x0200 = 512) is not AF_INET.
    const be = sin(80, [127, 0, 0, 1]);
    be[0] = 0;
    be[1] = AF.INET;
    expect(failed(req(1, POSIX_CALL.bind).i32(3).u32(16).raw(be).bytes)).toMatchObject({ errno: ERRNO.EAFNOSUPPORT });
    expect(failed(req(1, POSIX_CALL.connect).i32(3).u32(8).raw(sin(80, [127, 0, 0, 1]).slice(0, 8)).bytes)).toMatchObject({ errno: ERRNO.EINVAL });
    expect(failed(req(1, POSIX_CALL.connect).i32(3).u32(16).raw(sin6(80, LOOP6).slice(0, 16)).bytes)).toMatchObject({ errno: ERRNO.EINVAL });
    expect(failed(req(1, POSIX_CALL.connect).i32(3).u32(1).raw([2]).bytes)).toMatchObject({ errno: ERRNO.EINVAL });
    const v6field = [10, 0, 0, 80, ...new Array(252).fill(0)];
    v6field[0] = 99;
    expect(failed(req(2, POSIX_CALL.sendto).i32(3).u32(0).i32(0).u32(28).raw(v6field).bytes)).toMatchObject({ errno: ERRNO.EAFNOSUPPORT });
  });

  test("truncated getaddrinfo is EAI_SYSTEM/EINVAL in a 2064-byte reply; a node without NUL or not UTF-8 is EAI_NONAME", () => {
    const whole = req(9, POSIX_CALL.getaddrinfo).text("example.test", 2048).text("80", 128).i32(0, 0, 0, 0, 0).bytes;
    for (const n of [8, 100, 2056, 2203]) {
      const f = failed(whole.subarray(0, n));
      expect(f).toMatchObject({ callId: 9, fn: 18, errno: ERRNO.EINVAL, eai: EAI.SYSTEM });
      const r = encodeFailureReply(f)!;
      expect(r.length).toBe(2064);
      expect(header(r)).toEqual({ callId: 9, ret: EAI.SYSTEM, errno: ERRNO.EINVAL });
    }
    const noNul = req(9, POSIX_CALL.getaddrinfo).raw(new Array(2048).fill(0x61)).text("", 128).i32(0, 0, 0, 0, 0).bytes;
    expect(failed(noNul)).toMatchObject({ eai: EAI.NONAME });
    const badUtf8 = req(9, POSIX_CALL.getaddrinfo).raw([0xff, 0xfe]).zeros(2046).text("", 128).i32(0, 0, 0, 0, 0).bytes;
    expect(failed(badUtf8)).toMatchObject({ eai: EAI.NONAME });
    const svcNoNul = req(9, POSIX_CALL.getaddrinfo).text("x", 2048).raw(new Array(128).fill(0x31)).i32(0, 0, 0, 0, 0).bytes;
    expect(failed(svcNoNul)).toMatchObject({ eai: EAI.SERVICE });
  });

  test("random messages never throw, and every answerable failure gets a long-enough reply", () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let i = 0; i < 3000; i++) {
      const n = Math.floor(rnd() * 320);
      const msg = new Uint8Array(n);
      for (let j = 0; j < n; j++) msg[j] = Math.floor(rnd() * 256);
      if (n >= 8 && rnd() < 0.8) new DataView(msg.buffer).setInt32(4, 1 + Math.floor(rnd() * 19), true);
      if (n >= 16 && rnd() < 0.5) new DataView(msg.buffer).setUint32(12, Math.floor(rnd() * 40), true);
      const d = decodePosixRequest(msg);
      if (!d.ok && d.callId !== null) {
        const r = encodeFailureReply(d)!;
        expect(r.length).toBeGreaterThanOrEqual(minReplyBytes(d.fn ?? -1));
        expect(header(r).callId).toBe(d.callId);
      }
    }
  });
});

describe("replies: exact layouts and the stub's minimum lengths", () => {
  test("minimum lengths: 12 bytes, socketpair 20, getsockname/getpeername 16, getaddrinfo 2064", () => {
    const want: Record<string, number> = { socketpair: 20, getsockname: 16, getpeername: 16, getaddrinfo: 2064 };
    for (const [name, fn] of Object.entries(POSIX_CALL)) expect(minReplyBytes(fn)).toBe(want[name] ?? 12);
    expect(minReplyBytes(99)).toBe(2064);
  });

  test("error replies: ret -1 and errno, at least the minimum for every call", () => {
    for (const fn of Object.values(POSIX_CALL)) {
      const r = encodeErrorReply(fn, 31, ERRNO.EBADF);
      expect(r.length).toBe(minReplyBytes(fn));
      const h = header(r);
      expect(h.callId).toBe(31);
      expect(h.errno).toBe(ERRNO.EBADF);
      expect(h.ret).toBe(fn === POSIX_CALL.getaddrinfo ? EAI.SYSTEM : -1);
    }
  });

  test("ret-only success: 12 bytes, errno 0", () => {
    const r = encodeRetReply(-5, 3);
    expect(Array.from(r)).toEqual([0xfb, 0xff, 0xff, 0xff, 3, 0, 0, 0, 0, 0, 0, 0]);
  });

  test("accept: ret = new fd, i32 addrlen at 12, peer address at 16", () => {
    const r = encodeAcceptReply(4, 9, { family: "ipv4", address: "127.0.0.1", port: 40000 });
    expect(r.length).toBe(32);
    expect(header(r)).toEqual({ callId: 4, ret: 9, errno: 0 });
    expect(le(r).getInt32(12, true)).toBe(16);
    expect(Array.from(r.subarray(16))).toEqual(sin(40000, [127, 0, 0, 1]));
    expect(encodeAcceptReply(4, 9, null).length).toBe(16);
  });

  test("getsockname/getpeername: ret 0, i32 addrlen, the whole address (IPv6: 28)", () => {
    const r = encodeSocknameReply(8, { family: "ipv6", address: "::1", port: 5000 });
    expect(r.length).toBe(16 + 28);
    expect(header(r)).toEqual({ callId: 8, ret: 0, errno: 0 });
    expect(le(r).getInt32(12, true)).toBe(28);
    expect(Array.from(r.subarray(16))).toEqual(sin6(5000, LOOP6));
    // The stub: realAddressLen = MIN(bytes - 16, address_len); copied = MIN(capacity, real).
    expect(Math.min(r.length - 16, le(r).getInt32(12, true))).toBe(28);
  });

  test("recv: ret = n, the n bytes at 12; ret 0 is end of stream", () => {
    const r = encodeRecvReply(3, new Uint8Array([9, 8, 7]));
    expect(Array.from(r)).toEqual([3, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 9, 8, 7]);
    expect(header(encodeRecvReply(3, new Uint8Array(0)))).toEqual({ callId: 3, ret: 0, errno: 0 });
    expect(encodeRecvReply(3, new Uint8Array(0)).length).toBe(12);
  });

  test("recvfrom: ret, i32 data_len, i32 addrlen, the data, then the sender's address", () => {
    const data = new Uint8Array([1, 2, 3, 4, 5]);
    const r = encodeRecvfromReply(6, data, { family: "ipv4", address: "192.0.2.1", port: 53 });
    expect(r.length).toBe(20 + 5 + 16);
    expect(header(r)).toEqual({ callId: 6, ret: 5, errno: 0 });
    const dataLen = le(r).getInt32(12, true);
    const addrLen = le(r).getInt32(16, true);
    expect([dataLen, addrLen]).toEqual([5, 16]);
    // As the stub reads it: data at 20, address right after the data.
    expect(Array.from(r.subarray(20, 20 + dataLen))).toEqual([1, 2, 3, 4, 5]);
    const from = decodeSockaddr(r.subarray(20 + dataLen, 20 + dataLen + addrLen));
    expect(from).toEqual({ ok: true, addr: { family: "ipv4", address: "192.0.2.1", port: 53 } });
    const none = encodeRecvfromReply(6, data, null);
    expect(le(none).getInt32(16, true)).toBe(0);
    expect(none.length).toBe(25);
  });

  test("getsockopt: ret 0 and the value itself at 12 (the stub takes its length from the message length)", () => {
    const r = encodeGetsockoptReply(1, optionInt(0));
    expect(Array.from(r)).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const t = encodeGetsockoptReply(1, optionTimeval(1500));
    expect(t.length).toBe(20);
    expect([le(t).getInt32(12, true), le(t).getInt32(16, true)]).toEqual([1, 500_000]);
    expect(readOptionTimeval(optionTimeval(1500))).toBe(1500);
  });

  test("getaddrinfo success: canonname field, count at 2060, records of flags/family/socktype/protocol/addrlen/addr", () => {
    const r = encodeGetaddrinfoReply(
      12,
      [
        { socktype: SOCK.STREAM, protocol: IPPROTO.TCP, addr: { family: "ipv4", address: "127.0.0.1", port: 8080 } },
        { flags: AI.CANONNAME, socktype: SOCK.STREAM, protocol: IPPROTO.TCP, addr: { family: "ipv6", address: "::1", port: 8080 } },
      ],
      "localhost",
    );
    expect(r.length).toBe(2064 + 20 + 16 + 20 + 28);
    expect(header(r)).toEqual({ callId: 12, ret: 0, errno: 0 });
    expect(new TextDecoder().decode(r.subarray(12, 21))).toBe("localhost");
    expect(r[21]).toBe(0);
    expect(le(r).getInt32(2060, true)).toBe(2);
    // Walk the records as the stub does.
    let o = 2064;
    const seen = [];
    for (let i = 0; i < 2; i++) {
      const rec = { flags: le(r).getInt32(o, true), family: le(r).getInt32(o + 4, true), socktype: le(r).getInt32(o + 8, true), protocol: le(r).getInt32(o + 12, true) };
      const addrlen = le(r).getInt32(o + 16, true);
      const addr = decodeSockaddr(r.subarray(o + 20, o + 20 + addrlen));
      seen.push({ ...rec, addrlen, addr: addr.ok ? addr.addr : null });
      o += 20 + addrlen;
    }
    expect(o).toBe(r.length);
    expect(seen).toEqual([
      { flags: 0, family: 2, socktype: 1, protocol: 6, addrlen: 16, addr: { family: "ipv4", address: "127.0.0.1", port: 8080 } },
      { flags: 2, family: 10, socktype: 1, protocol: 6, addrlen: 28, addr: { family: "ipv6", address: "::1", port: 8080, flowinfo: 0, scopeId: 0 } },
    ]);
  });

  test("getaddrinfo: a canonname longer than the field is cut at 2047 bytes on a character boundary", () => {
    const r = encodeGetaddrinfoReply(1, [{ socktype: 1, protocol: 6, addr: { family: "ipv4", address: "1.2.3.4", port: 1 } }], "é".repeat(1500));
    const field = r.subarray(12, 12 + 2048);
    const end = field.indexOf(0);
    expect(end).toBe(2046);
    expect(new TextDecoder("utf-8", { fatal: true }).decode(field.subarray(0, end))).toBe("é".repeat(1023));
  });

  test("getaddrinfo failures and an empty result are 2064 bytes with the EAI code as ret", () => {
    const e = encodeGetaddrinfoError(5, EAI.NONAME);
    expect(e.length).toBe(2064);
    expect(header(e)).toEqual({ callId: 5, ret: -2, errno: 0 });
    expect(le(e).getInt32(2060, true)).toBe(0);
    expect(header(encodeGetaddrinfoError(5, EAI.SYSTEM, ERRNO.EIO))).toEqual({ callId: 5, ret: -11, errno: 29 });
    const empty = encodeGetaddrinfoReply(6, []);
    expect(empty.length).toBe(2064);
    expect(header(empty)).toEqual({ callId: 6, ret: EAI.NONAME, errno: 0 });
  });

  test("encoders refuse what they cannot encode instead of sending a wrong layout", () => {
    expect(() => encodeSocknameReply(1, { family: "ipv4", address: "localhost", port: 1 })).toThrow(RangeError);
    expect(() => encodeRecvfromReply(1, new Uint8Array(1), { family: "ipv6", address: "::1", port: 70000 })).toThrow(RangeError);
    expect(() => encodeRetReply(1, 2 ** 31)).toThrow(RangeError);
  });
});

describe("sockaddr", () => {
  test("IPv4: 16 bytes, family little-endian, port and address in network order", () => {
    expect(Array.from(encodeSockaddr({ family: "ipv4", address: "10.20.30.40", port: 0x1234 })!)).toEqual(sin(0x1234, [10, 20, 30, 40]));
    expect(decodeSockaddr(Uint8Array.from(sin(0x1234, [10, 20, 30, 40])))).toEqual({ ok: true, addr: { family: "ipv4", address: "10.20.30.40", port: 0x1234 } });
  });

  test("IPv6: 28 bytes, flowinfo in network order, scope id little-endian; round trip", () => {
    const addr = { family: "ipv6" as const, address: "2001:db8::8:800:200c:417a", port: 65535, flowinfo: 0xabcde, scopeId: 3 };
    const b = encodeSockaddr(addr)!;
    expect(b.length).toBe(28);
    expect(Array.from(b.subarray(0, 8))).toEqual([10, 0, 0xff, 0xff, 0x00, 0x0a, 0xbc, 0xde]);
    expect(Array.from(b.subarray(24))).toEqual([3, 0, 0, 0]);
    expect(decodeSockaddr(b)).toEqual({ ok: true, addr });
  });

  test("IPv6 text is RFC 5952; mapped IPv4 keeps its dotted tail", () => {
    const cases: Array<[string, string]> = [
      ["::", "::"],
      ["::1", "::1"],
      ["2001:0DB8:0:0:0:0:0:1", "2001:db8::1"],
      ["2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["fe80::1:0", "fe80::1:0"],
      ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"],
      ["::ffff:127.0.0.1", "::ffff:127.0.0.1"],
      ["::ffff:7f00:1", "::ffff:127.0.0.1"],
      ["1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"],
    ];
    for (const [input, want] of cases) expect(formatIpv6(parseIpv6(input)!)).toBe(want);
    for (const bad of ["", ":", ":::", "1::2::3", "1:2:3:4:5:6:7:8:9", "12345::", "::g", "fe80::1%eth0", "1.2.3.4::", "::1.2.3", "1:2:3:4:5:6:7:8::"]) {
      expect(parseIpv6(bad)).toBeNull();
    }
  });

  test("sockaddrOf accepts IP literals of either family only, and canonicalises them", () => {
    expect(sockaddrOf("127.0.0.1", 80)).toEqual({ family: "ipv4", address: "127.0.0.1", port: 80 });
    expect(sockaddrOf("0:0:0:0:0:0:0:1", 80)).toEqual({ family: "ipv6", address: "::1", port: 80, flowinfo: 0, scopeId: 0 });
    for (const bad of ["localhost", "127.1", "010.0.0.1", "1.2.3.256", "0x7f.0.0.1"]) expect(sockaddrOf(bad, 80)).toBeNull();
    expect(sockaddrOf("127.0.0.1", -1)).toBeNull();
  });
});

describe("errno and EAI mapping", () => {
  test("wasmnet error codes and a policy denial map to the program's numbers", () => {
    expect(posixErrno("denied")).toBe(2);
    expect(posixErrno("ECONNREFUSED")).toBe(14);
    expect(posixErrno("ETIMEDOUT")).toBe(73);
    expect(posixErrno("EHOSTUNREACH")).toBe(23);
    expect(posixErrno("EADDRINUSE")).toBe(3);
    expect(posixErrno("EBADREQ")).toBe(28);
    expect(posixErrno("EBADID")).toBe(8);
    expect(posixErrno("ELIMIT")).toBe(ERRNO.ENOBUFS);
    for (const code of ERROR_CODES) expect(posixErrno(code)).toBeGreaterThan(0);
    expect(posixEai("ENOTFOUND")).toBe(EAI.NONAME);
    expect(posixEai("denied")).toBe(EAI.NONAME);
    expect(posixEai("ETIMEDOUT")).toBe(EAI.AGAIN);
    for (const code of ERROR_CODES) expect(posixEai(code)).toBeLessThan(0);
  });

  test("option values: short ints and malformed timevals are refused", () => {
    expect(readOptionInt(new Uint8Array([1, 0]))).toBeNull();
    expect(readOptionInt(optionInt(-7))).toBe(-7);
    const tv = new Uint8Array(8);
    new DataView(tv.buffer).setInt32(4, 1_000_000, true);
    expect(readOptionTimeval(tv)).toBeNull();
    expect(readOptionTimeval(new Uint8Array(4))).toBeNull();
    new DataView(tv.buffer).setInt32(4, 1, true);
    expect(readOptionTimeval(tv)).toBe(1);
  });
});
