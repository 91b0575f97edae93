// The wire format of Emscripten's PROXY_POSIX_SOCKETS (the client stub in 3.1.6), as a pure
// codec: request bytes -> typed calls, typed results -> reply bytes. Layouts, minimum reply
// lengths and the stub's quirks are in docs/posix.md; every integer is 32-bit little-endian.
//
// Two rules come from the stub and shape this file:
// - A call blocks its thread until a reply with its callId arrives, with no timeout, and a
//   reply shorter than the stub's minimum for that call is dropped. So decoding never throws:
//   whatever arrives decodes either to a call or to a failure that keeps the callId (when at
//   least 4 bytes came) and the errno to answer with, and the error encoder always pads to the
//   call's minimum length.
// - errno and getaddrinfo codes are the program's (WASI numbering), never the host's.
//
// Browser-safe: no Bun or Node APIs.
import type { ErrorCode } from "./constants.ts";
import {
  EAI,
  ERRNO,
  GAI_NODE_BYTES,
  GAI_REQUEST_BYTES,
  GAI_SERVICE_BYTES,
  POSIX_CALL,
  POSIX_REPLY_HEADER_BYTES,
  POSIX_REQUEST_HEADER_BYTES,
  SENDTO_ADDR_FIELD_BYTES,
  SOCK,
  SOCKADDR_STORAGE_BYTES,
  TIMEVAL_BYTES,
  baseSocketType,
  posixCallName,
  type PosixCallName,
} from "./posix-constants.ts";
import { decodeSockaddr, encodeSockaddr, type Sockaddr, type SockaddrInput } from "./posix-sockaddr.ts";

export * from "./posix-constants.ts";
export * from "./posix-sockaddr.ts";

// ---------------------------------------------------------------------------------------------
// Requests

interface SocketArgs {
  callId: number;
  domain: number;
  /** As the program passed it, flag bits included. */
  type: number;
  /** `type` without SOCK_NONBLOCK / SOCK_CLOEXEC. */
  baseType: number;
  /** SOCK_NONBLOCK was set: every call on the socket behaves as with MSG_DONTWAIT. */
  nonblock: boolean;
  protocol: number;
}
export interface SocketRequest extends SocketArgs {
  call: "socket";
}
export interface SocketpairRequest extends SocketArgs {
  call: "socketpair";
}
export interface ShutdownRequest {
  call: "shutdown";
  callId: number;
  fd: number;
  how: number;
}
interface AddressArgs {
  callId: number;
  fd: number;
  addr: Sockaddr;
  /** The addrlen the program passed (at least the family's struct, at most sockaddr_storage). */
  addrlen: number;
}
export interface BindRequest extends AddressArgs {
  call: "bind";
}
export interface ConnectRequest extends AddressArgs {
  call: "connect";
}
export interface ListenRequest {
  call: "listen";
  callId: number;
  fd: number;
  backlog: number;
}
interface AddressOutArgs {
  callId: number;
  fd: number;
  /** The program's *address_len: room for the address it gets back. */
  addrCapacity: number;
}
export interface AcceptRequest extends AddressOutArgs {
  call: "accept";
}
export interface GetsocknameRequest extends AddressOutArgs {
  call: "getsockname";
}
export interface GetpeernameRequest extends AddressOutArgs {
  call: "getpeername";
}
export interface SendRequest {
  call: "send";
  callId: number;
  fd: number;
  flags: number;
  /** A view into the request message. */
  data: Uint8Array;
}
export interface RecvRequest {
  call: "recv";
  callId: number;
  fd: number;
  /** The program's buffer size: the reply carries at most this many bytes. */
  maxlen: number;
  flags: number;
}
export interface SendtoRequest {
  call: "sendto";
  callId: number;
  fd: number;
  flags: number;
  /** Null when the program passed no destination (dest_len 0): use the connected peer. */
  dest: Sockaddr | null;
  /** A view into the request message. */
  data: Uint8Array;
}
export interface RecvfromRequest {
  call: "recvfrom";
  callId: number;
  fd: number;
  maxlen: number;
  flags: number;
  addrCapacity: number;
}
export interface GetsockoptRequest {
  call: "getsockopt";
  callId: number;
  fd: number;
  level: number;
  optname: number;
  /** The program's *option_len: room for the value. */
  optlen: number;
}
export interface SetsockoptRequest {
  call: "setsockopt";
  callId: number;
  fd: number;
  level: number;
  optname: number;
  /** A view into the request message; its length is the program's option_len. */
  value: Uint8Array;
}
export interface AddrinfoHints {
  flags: number;
  family: number;
  socktype: number;
  protocol: number;
}
export interface GetaddrinfoRequest {
  call: "getaddrinfo";
  callId: number;
  /** Null for a NULL (or empty) node: the stub sends both as an empty field. */
  node: string | null;
  service: string | null;
  /** Null when the program passed no hints. */
  hints: AddrinfoHints | null;
}

export type PosixRequest =
  | SocketRequest
  | SocketpairRequest
  | ShutdownRequest
  | BindRequest
  | ConnectRequest
  | ListenRequest
  | AcceptRequest
  | GetsocknameRequest
  | GetpeernameRequest
  | SendRequest
  | RecvRequest
  | SendtoRequest
  | RecvfromRequest
  | GetsockoptRequest
  | SetsockoptRequest
  | GetaddrinfoRequest;

/**
 * A request that cannot be carried out as sent. Answer it with `encodeFailureReply`.
 * `callId` is null only when fewer than 4 bytes arrived (no reply can reach the caller then);
 * `fn` is null when fewer than 8 bytes arrived.
 */
export interface PosixDecodeFailure {
  ok: false;
  callId: number | null;
  fn: number | null;
  call: PosixCallName | null;
  /** The errno to answer with (EINVAL malformed, ENOSYS unknown/unsupported call, EAFNOSUPPORT bad family). */
  errno: number;
  /** For getaddrinfo: the EAI code to return (EAI_SYSTEM means "see errno"). */
  eai?: number;
  reason: string;
}

export type PosixDecoded = { ok: true; request: PosixRequest } | PosixDecodeFailure;

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Decodes one WebSocket message from the stub. Never throws. */
export function decodePosixRequest(msg: Uint8Array): PosixDecoded {
  const view = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  const n = msg.length;
  if (n < 4) {
    return { ok: false, callId: null, fn: null, call: null, errno: ERRNO.EINVAL, reason: `message of ${n} bytes has no callId` };
  }
  const callId = view.getInt32(0, true);
  if (n < POSIX_REQUEST_HEADER_BYTES) {
    return { ok: false, callId, fn: null, call: null, errno: ERRNO.EINVAL, reason: `message of ${n} bytes has no function number` };
  }
  const fn = view.getInt32(4, true);
  const call = posixCallName(fn);
  const fail = (errno: number, reason: string, eai?: number): PosixDecodeFailure =>
    eai === undefined ? { ok: false, callId, fn, call, errno, reason } : { ok: false, callId, fn, call, errno, eai, reason };
  if (call === null) return fail(ERRNO.ENOSYS, `unknown function ${fn}`);
  const i32 = (o: number) => view.getInt32(o, true);
  const u32 = (o: number) => view.getUint32(o, true);
  /** The stub sends every fixed layout at exactly its size. */
  const exact = (want: number): PosixDecodeFailure | null =>
    n === want ? null : fail(ERRNO.EINVAL, `${call}: message is ${n} bytes, the layout is ${want}`);

  switch (call) {
    case "socket":
    case "socketpair": {
      const bad = exact(20);
      if (bad) return bad;
      const type = i32(12);
      return {
        ok: true,
        request: { call, callId, domain: i32(8), type, baseType: baseSocketType(type), nonblock: (type & SOCK.NONBLOCK) !== 0, protocol: i32(16) },
      };
    }
    case "shutdown": {
      const bad = exact(16);
      if (bad) return bad;
      return { ok: true, request: { call, callId, fd: i32(8), how: i32(12) } };
    }
    case "bind":
    case "connect": {
      if (n < 16) return fail(ERRNO.EINVAL, `${call}: message is ${n} bytes, shorter than its 16-byte fixed part`);
      const addrlen = u32(12);
      if (addrlen > SOCKADDR_STORAGE_BYTES) return fail(ERRNO.EINVAL, `${call}: addrlen ${addrlen} is larger than sockaddr_storage`);
      const bad = exact(16 + addrlen);
      if (bad) return bad;
      const addr = decodeSockaddr(msg.subarray(16, 16 + addrlen));
      if (!addr.ok) return fail(addr.errno, `${call}: ${addr.reason}`);
      return { ok: true, request: { call, callId, fd: i32(8), addr: addr.addr, addrlen } };
    }
    case "listen": {
      const bad = exact(16);
      if (bad) return bad;
      return { ok: true, request: { call, callId, fd: i32(8), backlog: i32(12) } };
    }
    case "accept": {
      const bad = exact(16);
      if (bad) return bad;
      return { ok: true, request: { call, callId, fd: i32(8), addrCapacity: u32(12) } };
    }
    case "getsockname":
    case "getpeername": {
      // The stub sends sizeof(request) + *address_len - 256 bytes: a capacity up to 240 gives an
      // empty message, 256 the exact 16, more a tail of the program's stack. Only the first 16 count.
      if (n < 16) return fail(ERRNO.EINVAL, `${call}: message is ${n} bytes, the layout is 16 (the stub sends fewer when address_len < 256)`);
      return { ok: true, request: { call, callId, fd: i32(8), addrCapacity: u32(12) } };
    }
    case "send": {
      if (n < 20) return fail(ERRNO.EINVAL, `send: message is ${n} bytes, shorter than its 20-byte fixed part`);
      const length = u32(12);
      const bad = exact(20 + length);
      if (bad) return bad;
      return { ok: true, request: { call, callId, fd: i32(8), flags: i32(16), data: msg.subarray(20) } };
    }
    case "recv": {
      const bad = exact(20);
      if (bad) return bad;
      return { ok: true, request: { call, callId, fd: i32(8), maxlen: u32(12), flags: i32(16) } };
    }
    case "sendto": {
      const fixed = 24 + SENDTO_ADDR_FIELD_BYTES;
      if (n < fixed) return fail(ERRNO.EINVAL, `sendto: message is ${n} bytes, shorter than its ${fixed}-byte fixed part`);
      const length = u32(12);
      const bad = exact(fixed + length);
      if (bad) return bad;
      const destlen = u32(20);
      let dest: Sockaddr | null = null;
      if (destlen !== 0) {
        if (destlen > SOCKADDR_STORAGE_BYTES) return fail(ERRNO.EINVAL, `sendto: dest_len ${destlen} is larger than sockaddr_storage`);
        const addr = decodeSockaddr(msg.subarray(24, 24 + destlen));
        if (!addr.ok) return fail(addr.errno, `sendto: ${addr.reason}`);
        dest = addr.addr;
      }
      return { ok: true, request: { call, callId, fd: i32(8), flags: i32(16), dest, data: msg.subarray(fixed) } };
    }
    case "recvfrom": {
      const bad = exact(24);
      if (bad) return bad;
      return { ok: true, request: { call, callId, fd: i32(8), maxlen: u32(12), flags: i32(16), addrCapacity: u32(20) } };
    }
    case "getsockopt": {
      const bad = exact(24);
      if (bad) return bad;
      return { ok: true, request: { call, callId, fd: i32(8), level: i32(12), optname: i32(16), optlen: u32(20) } };
    }
    case "setsockopt": {
      if (n < 24) return fail(ERRNO.EINVAL, `setsockopt: message is ${n} bytes, shorter than its 24-byte fixed part`);
      const optlen = i32(20);
      if (optlen < 0) return fail(ERRNO.EINVAL, `setsockopt: option_len ${optlen} is negative`);
      const bad = exact(24 + optlen);
      if (bad) return bad;
      return { ok: true, request: { call, callId, fd: i32(8), level: i32(12), optname: i32(16), value: msg.subarray(24) } };
    }
    case "getaddrinfo": {
      if (n !== GAI_REQUEST_BYTES) return fail(ERRNO.EINVAL, `getaddrinfo: message is ${n} bytes, the layout is ${GAI_REQUEST_BYTES}`, EAI.SYSTEM);
      const node = nulPadded(msg.subarray(8, 8 + GAI_NODE_BYTES));
      const service = nulPadded(msg.subarray(8 + GAI_NODE_BYTES, 8 + GAI_NODE_BYTES + GAI_SERVICE_BYTES));
      if (node === undefined) return fail(ERRNO.EINVAL, "getaddrinfo: node is not NUL-terminated UTF-8", EAI.NONAME);
      if (service === undefined) return fail(ERRNO.EINVAL, "getaddrinfo: service is not NUL-terminated UTF-8", EAI.SERVICE);
      const h = 8 + GAI_NODE_BYTES + GAI_SERVICE_BYTES;
      const hints = i32(h) !== 0 ? { flags: i32(h + 4), family: i32(h + 8), socktype: i32(h + 12), protocol: i32(h + 16) } : null;
      return { ok: true, request: { call, callId, node, service, hints } };
    }
    case "sendmsg":
    case "recvmsg":
    case "getnameinfo":
      return fail(ERRNO.ENOSYS, `${call} is not part of the protocol (the 3.1.6 stub never sends it)`);
  }
}

/** The text before the first NUL; null when empty; undefined when there is no NUL or it is not UTF-8. */
function nulPadded(field: Uint8Array): string | null | undefined {
  const end = field.indexOf(0);
  if (end < 0) return undefined;
  if (end === 0) return null;
  try {
    return strictUtf8.decode(field.subarray(0, end));
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Replies

const GAI_REPLY_BYTES = POSIX_REPLY_HEADER_BYTES + GAI_NODE_BYTES + 4;

/**
 * The shortest reply the stub accepts for a function: it drops anything shorter and the call
 * then waits forever. For a function number it never sends, the longest of them, so that the
 * reply is accepted whichever call is waiting on that callId.
 */
export function minReplyBytes(fn: number): number {
  switch (fn) {
    case POSIX_CALL.socketpair:
      return POSIX_REPLY_HEADER_BYTES + 8;
    case POSIX_CALL.getsockname:
    case POSIX_CALL.getpeername:
      return POSIX_REPLY_HEADER_BYTES + 4;
    case POSIX_CALL.getaddrinfo:
      return GAI_REPLY_BYTES;
    default:
      return posixCallName(fn) === null ? GAI_REPLY_BYTES : POSIX_REPLY_HEADER_BYTES;
  }
}

function reply(callId: number, ret: number, errno: number, bytes: number): { out: Uint8Array; view: DataView } {
  const out = new Uint8Array(bytes);
  const view = new DataView(out.buffer);
  view.setInt32(0, callId, true);
  view.setInt32(4, ret, true);
  view.setInt32(8, errno, true);
  return { out, view };
}

function int32(name: string, v: number): number {
  if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new RangeError(`${name} ${v} is not a 32-bit integer`);
  return v;
}

function sockaddrBytes(addr: SockaddrInput): Uint8Array {
  const b = encodeSockaddr(addr);
  if (!b) throw new RangeError(`not an ${addr.family} address: ${addr.address} port ${addr.port}`);
  return b;
}

/**
 * A success that carries only `ret`: socket and accept-less calls (ret = the new fd), shutdown,
 * bind, connect, listen, setsockopt (ret = 0), send and sendto (ret = bytes taken).
 */
export function encodeRetReply(callId: number, ret: number): Uint8Array {
  return reply(int32("callId", callId), int32("ret", ret), 0, POSIX_REPLY_HEADER_BYTES).out;
}

/**
 * A failed call: ret −1 and `errno`, padded to the minimum length for `fn`. For getaddrinfo
 * ret is the EAI code (`eai`, default EAI_SYSTEM, whose meaning is "see errno").
 */
export function encodeErrorReply(fn: number, callId: number, errno: number, eai?: number): Uint8Array {
  const isGai = fn === POSIX_CALL.getaddrinfo;
  const ret = isGai ? (eai ?? EAI.SYSTEM) : -1;
  return reply(int32("callId", callId), ret, int32("errno", errno), minReplyBytes(fn)).out;
}

/** The reply to a request that failed to decode; null when no callId arrived (nothing can be answered). */
export function encodeFailureReply(failure: PosixDecodeFailure): Uint8Array | null {
  if (failure.callId === null) return null;
  return encodeErrorReply(failure.fn ?? -1, failure.callId, failure.errno, failure.eai);
}

/**
 * accept: ret = the new fd, then i32 addrlen and the peer's address. (The 3.1.6 stub copies the
 * address to the program only when ret is 0, i.e. never for a real fd; it is sent all the same.)
 */
export function encodeAcceptReply(callId: number, fd: number, peer: SockaddrInput | null): Uint8Array {
  const addr = peer ? sockaddrBytes(peer) : new Uint8Array(0);
  const { out, view } = reply(int32("callId", callId), int32("fd", fd), 0, POSIX_REPLY_HEADER_BYTES + 4 + addr.length);
  view.setInt32(12, addr.length, true);
  out.set(addr, 16);
  return out;
}

/**
 * getsockname / getpeername: ret 0, i32 addrlen, the whole address. The stub copies at most
 * the program's capacity and reports the real length, as POSIX wants.
 */
export function encodeSocknameReply(callId: number, addr: SockaddrInput): Uint8Array {
  const bytes = sockaddrBytes(addr);
  const { out, view } = reply(int32("callId", callId), 0, 0, POSIX_REPLY_HEADER_BYTES + 4 + bytes.length);
  view.setInt32(12, bytes.length, true);
  out.set(bytes, 16);
  return out;
}

/**
 * recv: ret = data.length, then the data; an empty `data` is ret 0, end of stream. The stub
 * copies ret bytes without checking the message: `data` must not exceed the request's maxlen.
 */
export function encodeRecvReply(callId: number, data: Uint8Array): Uint8Array {
  const { out } = reply(int32("callId", callId), data.length, 0, POSIX_REPLY_HEADER_BYTES + data.length);
  out.set(data, POSIX_REPLY_HEADER_BYTES);
  return out;
}

/**
 * recvfrom: ret = data.length, i32 data_len, i32 addrlen, the data, then the sender's whole
 * address (the stub copies at most the program's capacity and reports addrlen as sent).
 * `from` null (a connected stream socket) sends addrlen 0.
 */
export function encodeRecvfromReply(callId: number, data: Uint8Array, from: SockaddrInput | null): Uint8Array {
  const addr = from ? sockaddrBytes(from) : new Uint8Array(0);
  const head = POSIX_REPLY_HEADER_BYTES + 8;
  const { out, view } = reply(int32("callId", callId), data.length, 0, head + data.length + addr.length);
  view.setInt32(12, data.length, true);
  view.setInt32(16, addr.length, true);
  out.set(data, head);
  out.set(addr, head + data.length);
  return out;
}

/**
 * getsockopt: ret 0, then the value itself. The stub takes the option length from the message
 * length (there is no length field), so the value must be exactly the option's size.
 */
export function encodeGetsockoptReply(callId: number, value: Uint8Array): Uint8Array {
  const { out } = reply(int32("callId", callId), 0, 0, POSIX_REPLY_HEADER_BYTES + value.length);
  out.set(value, POSIX_REPLY_HEADER_BYTES);
  return out;
}

export interface AddrinfoEntry {
  /** The addrinfo's ai_flags (usually 0). */
  flags?: number;
  socktype: number;
  protocol: number;
  addr: SockaddrInput;
}

/**
 * getaddrinfo success: ret 0, canonname in a 2048-byte NUL-padded field (longer names are cut
 * at 2047 bytes), i32 count, then per entry i32 flags, family, socktype, protocol, addrlen and
 * the address. An empty list is sent as EAI_NONAME: the stub would hand the program an empty
 * (non-NULL) result list.
 */
export function encodeGetaddrinfoReply(callId: number, entries: readonly AddrinfoEntry[], canonname = ""): Uint8Array {
  if (entries.length === 0) return encodeErrorReply(POSIX_CALL.getaddrinfo, callId, 0, EAI.NONAME);
  const addrs = entries.map((e) => sockaddrBytes(e.addr));
  const total = GAI_REPLY_BYTES + addrs.reduce((s, a) => s + 20 + a.length, 0);
  const { out, view } = reply(int32("callId", callId), 0, 0, total);
  const name = truncateUtf8(canonname, GAI_NODE_BYTES - 1);
  out.set(name, POSIX_REPLY_HEADER_BYTES);
  view.setInt32(POSIX_REPLY_HEADER_BYTES + GAI_NODE_BYTES, entries.length, true);
  let o = GAI_REPLY_BYTES;
  entries.forEach((e, i) => {
    const a = addrs[i]!;
    view.setInt32(o, int32("ai_flags", e.flags ?? 0), true);
    view.setInt32(o + 4, a[0]! | (a[1]! << 8), true);
    view.setInt32(o + 8, int32("ai_socktype", e.socktype), true);
    view.setInt32(o + 12, int32("ai_protocol", e.protocol), true);
    view.setInt32(o + 16, a.length, true);
    out.set(a, o + 20);
    o += 20 + a.length;
  });
  return out;
}

/** getaddrinfo failure: ret = the EAI code, errno (meaningful with EAI_SYSTEM), 2064 bytes. */
export function encodeGetaddrinfoError(callId: number, eai: number, errno = 0): Uint8Array {
  return encodeErrorReply(POSIX_CALL.getaddrinfo, callId, errno, eai);
}

/** At most `max` bytes of UTF-8, cut on a character boundary. */
function truncateUtf8(s: string, max: number): Uint8Array {
  const b = utf8.encode(s);
  if (b.length <= max) return b;
  let end = max;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}

// ---------------------------------------------------------------------------------------------
// Option values

/** An int option value (4 bytes, the program's byte order). */
export function optionInt(v: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setInt32(0, int32("option", v), true);
  return out;
}

/** An int option the program set: null when it is shorter than an int (EINVAL, as on Linux). */
export function readOptionInt(value: Uint8Array): number | null {
  if (value.length < 4) return null;
  return new DataView(value.buffer, value.byteOffset, value.byteLength).getInt32(0, true);
}

/** A struct timeval (SO_RCVTIMEO / SO_SNDTIMEO) in milliseconds (0 = no timeout). */
export function optionTimeval(ms: number): Uint8Array {
  const out = new Uint8Array(TIMEVAL_BYTES);
  const view = new DataView(out.buffer);
  const whole = Math.max(0, Math.floor(ms));
  view.setInt32(0, Math.floor(whole / 1000), true);
  view.setInt32(4, (whole % 1000) * 1000, true);
  return out;
}

/**
 * A struct timeval the program set, in milliseconds rounded up (so 1 µs is not "no timeout");
 * null when it is too short or tv_usec is outside 0..999999 (EDOM on Linux; answer EINVAL).
 */
export function readOptionTimeval(value: Uint8Array): number | null {
  if (value.length < TIMEVAL_BYTES) return null;
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const sec = view.getInt32(0, true);
  const usec = view.getInt32(4, true);
  if (sec < 0 || usec < 0 || usec > 999_999) return null;
  return sec * 1000 + Math.ceil(usec / 1000);
}

// ---------------------------------------------------------------------------------------------
// wasmnet outcomes -> the program's numbers

/** The errno a socket call answers with for a wasmnet error code or a policy denial. */
export function posixErrno(cause: ErrorCode | "denied"): number {
  switch (cause) {
    case "denied":
      return ERRNO.EACCES;
    case "ECONNREFUSED":
      return ERRNO.ECONNREFUSED;
    case "ETIMEDOUT":
      return ERRNO.ETIMEDOUT;
    case "EHOSTUNREACH":
      return ERRNO.EHOSTUNREACH;
    case "ENOTFOUND":
      return ERRNO.EHOSTUNREACH;
    case "EADDRINUSE":
      return ERRNO.EADDRINUSE;
    case "ELIMIT":
      return ERRNO.ENOBUFS;
    case "EBADREQ":
      return ERRNO.EINVAL;
    case "EBADID":
      return ERRNO.EBADF;
    case "EIDINUSE":
      return ERRNO.EINVAL;
    case "ETLS":
      return ERRNO.EPROTO;
    case "EINTERNAL":
      return ERRNO.EIO;
  }
}

/** The getaddrinfo return code for a wasmnet error code or a policy denial (no address left). */
export function posixEai(cause: ErrorCode | "denied"): number {
  switch (cause) {
    case "denied":
    case "ENOTFOUND":
    case "EBADREQ":
      return EAI.NONAME;
    case "ETIMEDOUT":
    case "ELIMIT":
      return EAI.AGAIN;
    default:
      return EAI.FAIL;
  }
}
