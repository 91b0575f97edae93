// What the /posix/ adapter keeps per socket of a program: its kind and state, the bytes and
// datagrams received and not yet asked for, the calls waiting on it, and its options. No I/O:
// the adapter (./posix.ts) moves it and answers the calls. docs/posix.md describes the
// behaviour ("How wasmnet answers each call").
import { AF, IPPROTO, IPV6_V6ONLY, SO, SOCK, SOL_SOCKET, TCP_OPT, TIMEVAL_BYTES } from "../protocol/posix-constants.ts";
import type { SockaddrInput } from "../protocol/posix-sockaddr.ts";
import type { UploadWindow } from "./base.ts";

/** One call waiting for its reply: the request's callId and function number. */
export interface Call {
  callId: number;
  fn: number;
}

export type Family = typeof AF.INET | typeof AF.INET6;

/**
 * - fresh: socket() only, nothing in the session (also after a failed connect or bind);
 * - binding / listening-soon: a session `bind` is in flight (for bind(), or listen() on an unbound socket);
 * - bound: a TCP listener is up but listen() has not been called: connections are turned away;
 * - listening: accept() takes connections;
 * - connecting / connected: a TCP stream (or, for UDP, `opening` / `open`: the datagram socket);
 * - ended: the session's stream is gone (EOF, reset, error); the fd stays until shutdown(SHUT_RDWR).
 */
export type SocketState = "fresh" | "binding" | "bound" | "listening" | "connecting" | "connected" | "opening" | "open" | "ended";

/** An address and port as the session reports them (canonical IP text). */
export interface Endpoint {
  address: string;
  port: number;
}

export interface RecvWaiter {
  call: Call;
  /** The most bytes the reply may carry (the program's maxlen, capped). */
  cap: number;
  peek: boolean;
  /** MSG_WAITALL: wait until `cap` bytes are buffered (or the stream ends). */
  waitAll: boolean;
  /** recvfrom: the reply carries the sender's address. */
  withAddress: boolean;
  timer?: ReturnType<typeof setTimeout>;
}

export interface AcceptWaiter {
  call: Call;
  timer?: ReturnType<typeof setTimeout>;
}

export interface SendWaiter {
  call: Call;
  /** Bytes the call sent: its reply. */
  bytes: number;
  /** The call is done once this many bytes of the socket's stream have been handed to the session. */
  until: number;
  /** SO_SNDTIMEO: when it fires, the call ends with what was handed on so far (or EAGAIN). */
  timer?: ReturnType<typeof setTimeout>;
}

/** A sendto() on a datagram socket whose session socket is still being opened. */
export interface PendingDatagram {
  call: Call;
  dest: Endpoint;
  data: Uint8Array;
}

export interface Datagram {
  data: Uint8Array;
  from: Endpoint;
}

/** Bytes received on a stream and not yet taken by recv(), oldest first. */
export class ByteQueue {
  private chunks: Uint8Array[] = [];
  private _size = 0;

  get size(): number {
    return this._size;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this._size += chunk.length;
  }

  /** Up to `n` bytes from the front; removed unless `peek`. */
  take(n: number, peek = false): Uint8Array {
    const want = Math.min(n, this._size);
    const head = this.chunks[0];
    if (want === 0 || head === undefined) return new Uint8Array(0);
    let out: Uint8Array;
    if (head.length >= want) out = head.subarray(0, want);
    else {
      out = new Uint8Array(want);
      let at = 0;
      for (const c of this.chunks) {
        const part = c.subarray(0, Math.min(c.length, want - at));
        out.set(part, at);
        at += part.length;
        if (at === want) break;
      }
    }
    if (!peek) this.drop(want);
    return out;
  }

  clear(): void {
    this.chunks = [];
    this._size = 0;
  }

  private drop(n: number): void {
    this._size -= n;
    let left = n;
    let i = 0;
    while (left > 0) {
      const c = this.chunks[i]!;
      if (c.length > left) {
        this.chunks[i] = c.subarray(left);
        break;
      }
      left -= c.length;
      i++;
    }
    if (i > 0) this.chunks.splice(0, i);
  }
}

/** How a socket option's value is shaped. */
type OptionShape = "int" | "bool" | "timeval" | "linger";

/**
 * The options setsockopt accepts and getsockopt reports back. They are recorded per socket;
 * SO_RCVTIMEO (recv, recvfrom and accept time out with EAGAIN) and SO_SNDTIMEO (a send blocked
 * on window room ends with the bytes handed on so far, or EAGAIN) change what wasmnet does.
 * wasmnet's own TCP sockets always run with TCP_NODELAY and its defaults otherwise.
 */
const OPTIONS = new Map<string, OptionShape>([
  [key(SOL_SOCKET, SO.REUSEADDR), "bool"],
  [key(SOL_SOCKET, SO.REUSEPORT), "bool"],
  [key(SOL_SOCKET, SO.KEEPALIVE), "bool"],
  [key(SOL_SOCKET, SO.BROADCAST), "bool"],
  [key(SOL_SOCKET, SO.SNDBUF), "int"],
  [key(SOL_SOCKET, SO.RCVBUF), "int"],
  [key(SOL_SOCKET, SO.RCVTIMEO), "timeval"],
  [key(SOL_SOCKET, SO.SNDTIMEO), "timeval"],
  [key(SOL_SOCKET, SO.LINGER), "linger"],
  [key(IPPROTO.TCP, TCP_OPT.NODELAY), "bool"],
  [key(IPPROTO.TCP, TCP_OPT.KEEPIDLE), "int"],
  [key(IPPROTO.TCP, TCP_OPT.KEEPINTVL), "int"],
  [key(IPPROTO.TCP, TCP_OPT.KEEPCNT), "int"],
  [key(IPPROTO.IPV6, IPV6_V6ONLY), "bool"],
]);

function key(level: number, name: number): string {
  return `${level}:${name}`;
}

/** The shape of a settable option, or null (ENOPROTOOPT). */
export function optionShape(level: number, name: number): OptionShape | null {
  return OPTIONS.get(key(level, name)) ?? null;
}

/** The size of an option's value in bytes. */
export function optionBytes(shape: OptionShape): number {
  return shape === "timeval" || shape === "linger" ? TIMEVAL_BYTES : 4;
}

export class PosixSocket {
  /** Null while an accepted connection waits in its listener's queue (no fd until accept()). */
  fd: number | null;
  /** The session id of its live session resource (stream, UDP socket, listener), or null. */
  sid: number | null = null;
  state: SocketState = "fresh";
  /** Set when shutdown(SHUT_RD) / (SHUT_WR) were called. */
  rdShut = false;
  wrShut = false;
  /** SHUT_WR while bytes still waited for window room: the FIN follows them. */
  finPending = false;
  /** The target half-closed or the stream is gone: recv gives 0 once the buffer is empty. */
  remoteEnded = false;
  /** The pending error SO_ERROR reports (and recv, once), in the program's errno. */
  soError = 0;
  /** The address given to bind (for getsockname), and the real port once bound. */
  local: Endpoint | null = null;
  /** Where a stream goes (or came from), or a datagram socket's connected peer. */
  peer: Endpoint | null = null;
  /** The listener's accept-queue bound (from listen's backlog). */
  backlog = 1;
  /** Its fd has served as a session id already: later resources take fresh ids. */
  fdUsedAsSid = false;
  /**
   * A call waiting for a session answer on this socket: connect (call null when non-blocking),
   * bind, listen (autobind: listen() on an unbound socket), or a UDP connect (with its peer).
   */
  op: { kind: "connect" | "bind" | "listen" | "autobind" | "udp-connect"; call: Call | null; peer?: Endpoint } | null = null;

  // ---- streams ----
  readonly inbox = new ByteQueue();
  /** The target is not read while `inbox` is full. */
  readHeld = false;
  /** Bytes beyond the session's window wait here; null for datagram sockets and listeners. */
  upload: UploadWindow | null = null;
  /** Bytes of this stream offered to `upload` so far, and handed on to the session. */
  offered = 0;
  forwarded = 0;
  /** This socket's share of the adapter's held total, as last noted. */
  heldNoted = 0;
  readonly sendWaiters: SendWaiter[] = [];
  readonly recvWaiters: RecvWaiter[] = [];

  // ---- listeners ----
  readonly acceptQueue: PosixSocket[] = [];
  readonly acceptWaiters: AcceptWaiter[] = [];

  // ---- datagram sockets ----
  readonly datagrams: Datagram[] = [];
  datagramBytes = 0;
  readonly pendingDatagrams: PendingDatagram[] = [];

  // ---- options ----
  private readonly options = new Map<string, Uint8Array>();
  /** SO_RCVTIMEO in ms; 0: wait for ever. */
  rcvTimeoutMs = 0;
  /** SO_SNDTIMEO in ms; 0: wait for ever. */
  sndTimeoutMs = 0;

  constructor(
    fd: number | null,
    readonly family: Family,
    /** SOCK_STREAM or SOCK_DGRAM. */
    readonly type: number,
    /** SOCK_NONBLOCK was given: every call behaves as with MSG_DONTWAIT. */
    readonly nonblock: boolean,
  ) {
    this.fd = fd;
  }

  get stream(): boolean {
    return this.type === SOCK.STREAM;
  }

  get protocol(): number {
    return this.stream ? IPPROTO.TCP : IPPROTO.UDP;
  }

  /** Calls waiting on this socket, for the session-wide bound on parked calls. */
  get parked(): number {
    return this.recvWaiters.length + this.sendWaiters.length + this.acceptWaiters.length + this.pendingDatagrams.length + (this.op?.call ? 1 : 0);
  }

  setOption(level: number, name: number, value: Uint8Array): void {
    this.options.set(key(level, name), value.slice());
  }

  option(level: number, name: number): Uint8Array | undefined {
    return this.options.get(key(level, name));
  }

  /** An endpoint in this socket's family: IPv4 on an AF_INET6 socket as ::ffff:a.b.c.d. */
  sockaddr(e: Endpoint): SockaddrInput {
    const v4 = !e.address.includes(":");
    if (v4 && this.family === AF.INET) return { family: "ipv4", address: e.address, port: e.port };
    return { family: "ipv6", address: v4 ? `::ffff:${e.address}` : e.address, port: e.port };
  }

  /** The wildcard address of this socket's family. */
  get wildcard(): string {
    return this.family === AF.INET6 ? "::" : "0.0.0.0";
  }
}
