// Emscripten's PROXY_POSIX_SOCKETS (a C program's BSD socket calls, one per message) as an
// adapter over the same Session as every other protocol: connect, sendto and bind go through
// the session's gate, limits, metrics and audit unchanged. The wire format is the codec's
// (src/protocol/posix.ts); the behaviour of each call is described in docs/posix.md ("How
// wasmnet answers each call").
//
// The shape of it:
// - fds are this session's own numbers, 3, 4, 5 … in order and never reused within a session, so
//   a late event can never be taken for a newer socket's. A socket's first session resource uses
//   its fd as session id (audit lines name the fd); a second one (connect after a failed connect,
//   a UDP socket connected elsewhere) and getaddrinfo look-ups take ids above every fd.
// - Every request gets exactly one reply: at once, or when the session answers (connect, bind,
//   the first datagram of a UDP socket, getaddrinfo), or when the socket can satisfy it (recv,
//   recvfrom, accept, a send waiting for window room). Replies go out as calls complete, so a
//   recv waiting on one socket never holds up a call on another.
// - Received bytes wait per socket until recv() asks, at most stream_buffer_bytes (the session's
//   window); at that point the target is no longer read (Session.holdReading) until recv makes
//   room. Datagrams wait in a bounded queue; beyond it they are dropped and counted.
// - Sends use the session's byte credit: at most a window per socket is with the session, bytes
//   beyond it wait in an UploadWindow and the send() is answered once they have all been handed
//   on, so a blocking send blocks while the target is slow, and MSG_DONTWAIT gets EAGAIN.
import type { ServerWebSocket } from "bun";
import { canonicalIp, splitHostPort } from "../policy/address.ts";
import { MAX_DATAGRAM_BYTES } from "../protocol/constants.ts";
import type { Event } from "../protocol/messages.ts";
import { addrinfoEntries, checkHints, literalFamily, nullNodeAddresses, parseService, type AddrinfoQuery } from "../protocol/posix-addrinfo.ts";
import {
  AF,
  AI,
  EAI,
  ERRNO,
  IPPROTO,
  IPV6_V6ONLY,
  MSG,
  POSIX_CALL,
  SHUT,
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
  posixEai,
  posixErrno,
  readOptionInt,
  readOptionTimeval,
  type GetaddrinfoRequest,
  type PosixRequest,
  type Sockaddr,
} from "../protocol/posix.ts";
import type { SessionContext } from "../session/context.ts";
import { INPUT_PAUSE, UploadWindow, udpSocketEnds, WsAdapter, type AdmittedClient, type WsData } from "./base.ts";
import { PosixSocket, optionBytes, optionShape, type AcceptWaiter, type Call, type Endpoint, type RecvWaiter, type SendWaiter } from "./posix-socket.ts";

/** The first fd a program gets (0–2 are its own stdin, stdout, stderr). */
const FIRST_FD = 3;
const MAX_FD = 0x7fffffff;
/** Session ids for look-ups and a socket's later resources: above every fd, below the server's own ids. */
const AUX_ID_BASE = 2 ** 31;
/** Open fds when the policy sets no max_connections (with one, that is the bound). */
const MAX_FDS = 1024;
/** Calls that may wait at once per session (a program has one per thread). */
const MAX_PARKED_CALLS = 1024;
/** Datagrams kept per socket until recvfrom() takes them (and at most a window of bytes). */
const MAX_DATAGRAMS = 256;
/** The longest accept queue, whatever listen()'s backlog asks. */
const MAX_ACCEPT_QUEUE = 128;
/** callIds answered by a guess (see `unaddressed`) that are remembered. */
const GUESSES_KEPT = 64;

const EMPTY = new Uint8Array(0);

interface Lookup {
  call: Call;
  node: string;
  port: number;
  query: AddrinfoQuery;
}

export class PosixAdapter extends WsAdapter {
  private readonly fds = new Map<number, PosixSocket>();
  /** Sockets by the session id of their live resource (accepted connections before accept() too). */
  private readonly bySid = new Map<number, PosixSocket>();
  private readonly lookups = new Map<number, Lookup>();
  private nextFd = FIRST_FD;
  private nextAuxId = AUX_ID_BASE;
  /** The highest callId seen: an empty message is answered as the next one. */
  private highestCallId = 0;
  private readonly guessed = new Set<number>();
  /** While a datagram is handed to the session: its refusal or error arrives here, synchronously. */
  private capture: { sid: number; ev: Event | null } | null = null;
  /** Bytes waiting beyond their sockets' windows (noteHeld): the client is not read while too much waits. */
  private heldTotal = 0;
  private readonly window: number;
  private gone = false;

  constructor(ws: ServerWebSocket<WsData>, ctx: SessionContext, who: AdmittedClient) {
    super(ws, ctx, who, { flow: true, halfClose: true, protocol: "posix" });
    this.window = this.session.window;
  }

  // ---- client → session ----

  protected receive(message: string | Buffer): void {
    if (this.session.closed || this.gone) return;
    if (typeof message === "string") {
      // A text frame carries no readable callId, so nothing can be answered; it is counted.
      return this.session.noteError(0, "EBADREQ", "posix: text frame (the protocol is binary frames only)");
    }
    const max = this.session.maxMessageBytes;
    if (message.length > max) return this.oversized(message, max);
    const d = decodePosixRequest(message);
    if (!d.ok) {
      if (d.callId === null) return this.unaddressed(message.length);
      if (!this.seen(d.callId)) return;
      this.session.noteError(0, "EBADREQ", `posix: ${d.reason}`);
      return this.sendFrame(encodeFailureReply(d)!);
    }
    if (!this.seen(d.request.callId)) return;
    this.dispatch(d.request);
  }

  /** Notes a callId; false when it was already answered by a guess (the request is dropped). */
  private seen(callId: number): boolean {
    if (this.guessed.delete(callId)) {
      this.session.noteError(0, "EBADREQ", `posix: call ${callId} arrived after an empty message was answered under its callId; dropped`);
      return false;
    }
    if (callId > this.highestCallId) this.highestCallId = callId;
    return true;
  }

  /**
   * A message of 0–3 bytes has no callId. The 3.1.6 stub sends one for getsockname/getpeername
   * with an address buffer under 244 bytes (docs/posix.md, quirks), and that call then waits
   * for ever. Its callId is the next in sequence whenever the program has no other call in
   * flight (always, for a single-threaded program), so it is answered as that call with EINVAL:
   * the program gets an error instead of hanging. Should a request with that callId arrive
   * after all (another thread's call, guessed wrongly), it is dropped: one reply per callId.
   */
  private unaddressed(bytes: number): void {
    const guess = this.highestCallId + 1;
    this.session.noteError(0, "EBADREQ", `posix: a ${bytes}-byte message has no callId; answered as call ${guess}`);
    if (guess > MAX_FD) return;
    this.highestCallId = guess;
    this.guessed.add(guess);
    if (this.guessed.size > GUESSES_KEPT) this.guessed.delete(this.guessed.values().next().value!);
    this.sendFrame(encodeErrorReply(-1, guess, ERRNO.EINVAL)); // unknown function: the longest minimum length
  }

  private oversized(message: Buffer, max: number): void {
    this.session.noteError(0, "ELIMIT", `posix: message of ${message.length} bytes exceeds max_message_bytes (${max})`);
    if (message.length < 4) return;
    const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
    const callId = view.getInt32(0, true);
    const fn = message.length >= 8 ? view.getInt32(4, true) : -1;
    if (!this.seen(callId)) return;
    const big = fn === POSIX_CALL.send || fn === POSIX_CALL.sendto;
    this.sendFrame(encodeErrorReply(fn, callId, big ? ERRNO.EMSGSIZE : ERRNO.EINVAL));
  }

  private dispatch(r: PosixRequest): void {
    const call: Call = { callId: r.callId, fn: POSIX_CALL[r.call] };
    if (r.call === "socket") return this.socket(call, r.domain, r.baseType, r.protocol, r.nonblock);
    if (r.call === "socketpair") return this.fail(call, ERRNO.EOPNOTSUPP);
    if (r.call === "getaddrinfo") return this.getaddrinfo(call, r);
    const s = this.fds.get(r.fd);
    if (!s) return this.fail(call, ERRNO.EBADF);
    switch (r.call) {
      case "shutdown":
        return this.shutdown(call, s, r.how);
      case "bind":
        return this.bind(call, s, r.addr);
      case "connect":
        return this.connect(call, s, r.addr);
      case "listen":
        return this.listen(call, s, r.backlog);
      case "accept":
        return this.accept(call, s);
      case "getsockname":
        return this.sendFrame(encodeSocknameReply(call.callId, s.sockaddr(s.local ?? { address: s.wildcard, port: 0 })));
      case "getpeername":
        return this.getpeername(call, s);
      case "send":
        return this.sendCall(call, s, r.flags, r.data, null);
      case "sendto":
        if (r.dest && !sameFamily(s, r.dest)) return this.fail(call, ERRNO.EAFNOSUPPORT);
        return this.sendCall(call, s, r.flags, r.data, r.dest && endpoint(r.dest));
      case "recv":
        return this.recv(call, s, r.maxlen, r.flags, false);
      case "recvfrom":
        return this.recv(call, s, r.maxlen, r.flags, true);
      case "getsockopt":
        return this.getsockopt(call, s, r.level, r.optname);
      case "setsockopt":
        return this.setsockopt(call, s, r.level, r.optname, r.value);
    }
  }

  // ---- replies ----

  private ok(call: Call, ret = 0): void {
    this.sendFrame(encodeRetReply(call.callId, ret));
  }

  private fail(call: Call, errno: number): void {
    this.sendFrame(encodeErrorReply(call.fn, call.callId, errno));
  }

  // ---- socket, getaddrinfo ----

  private socket(call: Call, domain: number, type: number, protocol: number, nonblock: boolean): void {
    if (domain !== AF.INET && domain !== AF.INET6) return this.fail(call, ERRNO.EAFNOSUPPORT);
    if (type !== SOCK.STREAM && type !== SOCK.DGRAM) return this.fail(call, ERRNO.EPROTONOSUPPORT);
    if (protocol !== 0 && protocol !== (type === SOCK.STREAM ? IPPROTO.TCP : IPPROTO.UDP)) return this.fail(call, ERRNO.EPROTONOSUPPORT);
    if (this.fds.size >= this.fdLimit || this.nextFd > MAX_FD) return this.fail(call, ERRNO.EMFILE);
    const fd = this.nextFd++;
    this.fds.set(fd, new PosixSocket(fd, domain, type, nonblock));
    this.ok(call, fd);
  }

  /** Open fds: max_connections when the policy sets one (every socket may become a connection). */
  private get fdLimit(): number {
    const max = this.session.policy.maxConnections;
    return max > 0 ? max : MAX_FDS;
  }

  private getaddrinfo(call: Call, r: GetaddrinfoRequest): void {
    const q = checkHints(r.hints);
    if (!q.ok) return this.sendFrame(encodeGetaddrinfoError(call.callId, q.eai));
    const query = q.value;
    const port = parseService(r.service, query.flags);
    if (!port.ok) return this.sendFrame(encodeGetaddrinfoError(call.callId, port.eai));
    if (r.node === null) {
      if (r.service === null) return this.sendFrame(encodeGetaddrinfoError(call.callId, EAI.NONAME));
      // Wildcard (AI_PASSIVE) or loopback: no look-up; bind and connect judge the address.
      return this.sendFrame(encodeGetaddrinfoReply(call.callId, addrinfoEntries(nullNodeAddresses(query), port.value, query)));
    }
    if (literalFamily(r.node) === null && query.flags & AI.NUMERICHOST) return this.sendFrame(encodeGetaddrinfoError(call.callId, EAI.NONAME));
    // Names and literals alike go through the session's resolve: the gate answers with the
    // addresses the policy allows (a literal without a look-up).
    const id = this.nextAuxId++;
    this.lookups.set(id, { call, node: r.node, port: port.value, query });
    this.session.handle({ ok: true, req: { op: "resolve", id, name: r.node } });
  }

  private lookupDone(id: number, l: Lookup, ev: Event): void {
    this.lookups.delete(id);
    const callId = l.call.callId;
    switch (ev.ev) {
      case "resolved": {
        const canonname = l.query.flags & AI.CANONNAME ? l.node : "";
        // No address of the family asked for is EAI_NONAME (the encoder sends an empty list so).
        return this.sendFrame(encodeGetaddrinfoReply(callId, addrinfoEntries(ev.addrs, l.port, l.query), canonname));
      }
      case "denied":
        return this.sendFrame(encodeGetaddrinfoError(callId, posixEai("denied")));
      case "error":
        return this.sendFrame(encodeGetaddrinfoError(callId, posixEai(ev.code), posixErrno(ev.code)));
      default:
        this.lookups.set(id, l); // nothing else answers a resolve
    }
  }

  // ---- shutdown: half-closes, and SHUT_RDWR frees the fd ----

  private shutdown(call: Call, s: PosixSocket, how: number): void {
    if (how === SHUT.RDWR) {
      // The stub does not forward close(): this is how a program lets go of a socket.
      this.release(s, true);
      return this.ok(call);
    }
    if (how !== SHUT.RD && how !== SHUT.WR) return this.fail(call, ERRNO.EINVAL);
    const connected = s.stream ? s.state === "connecting" || s.state === "connected" || s.state === "ended" : s.peer !== null;
    if (!connected) return this.fail(call, ERRNO.ENOTCONN);
    this.ok(call);
    if (how === SHUT.RD) {
      s.rdShut = true;
      s.inbox.clear();
      s.datagrams.length = 0;
      s.datagramBytes = 0;
      return this.serveRecv(s);
    }
    if (s.wrShut) return;
    s.wrShut = true;
    if (!s.stream) return;
    if (s.upload && s.upload.heldBytes > 0) s.finPending = true;
    else this.sendFin(s);
  }

  private sendFin(s: PosixSocket): void {
    if (s.sid !== null && (s.state === "connecting" || s.state === "connected")) this.session.handle({ ok: true, req: { op: "shutdown", id: s.sid } });
  }

  /**
   * Lets go of a socket: its session resource is closed (a stream flushes what the session holds,
   * then FINs) and calls still waiting on it are answered — when `answer` (the program's
   * shutdown(SHUT_RDWR)), not when the WebSocket is gone.
   */
  private release(s: PosixSocket, answer: boolean): void {
    if (s.fd !== null && this.fds.get(s.fd) === s) this.fds.delete(s.fd);
    for (const w of s.recvWaiters.splice(0)) {
      clearTimeout(w.timer);
      if (answer) this.sendFrame(recvReply(w, EMPTY, null, s));
    }
    for (const w of s.acceptWaiters.splice(0)) {
      clearTimeout(w.timer);
      if (answer) this.fail(w.call, ERRNO.EINVAL);
    }
    for (const w of s.sendWaiters.splice(0)) {
      clearTimeout(w.timer);
      if (answer) this.fail(w.call, ERRNO.EPIPE);
    }
    for (const p of s.pendingDatagrams.splice(0)) if (answer) this.fail(p.call, ERRNO.EPIPE);
    if (s.op?.call && answer) this.fail(s.op.call, ERRNO.ECONNABORTED);
    s.op = null;
    for (const conn of s.acceptQueue.splice(0)) this.closeResource(conn);
    s.upload?.clear();
    this.noteHeld(s);
    this.closeResource(s);
    s.state = "ended";
  }

  /** Closes the socket's session resource, if it has one; its events are no longer wanted. */
  private closeResource(s: PosixSocket): void {
    const sid = s.sid;
    if (sid === null) return;
    this.unmap(s);
    this.session.handle({ ok: true, req: { op: "close", id: sid } });
  }

  private unmap(s: PosixSocket): void {
    if (s.sid !== null && this.bySid.get(s.sid) === s) this.bySid.delete(s.sid);
    s.sid = null;
    s.readHeld = false;
    this.noteHeld(s); // what it held no longer counts
  }

  /** A session id for a new resource of `s`: its fd the first time, then a fresh one. */
  private claimSid(s: PosixSocket): number {
    const sid = !s.fdUsedAsSid && s.fd !== null ? s.fd : this.nextAuxId++;
    s.fdUsedAsSid = true;
    s.sid = sid;
    this.bySid.set(sid, s);
    return sid;
  }

  // ---- bind, listen, accept ----

  private bind(call: Call, s: PosixSocket, addr: Sockaddr): void {
    if (!sameFamily(s, addr)) return this.fail(call, ERRNO.EAFNOSUPPORT);
    if (s.state !== "fresh" || s.local !== null) return this.fail(call, ERRNO.EINVAL);
    const at = endpoint(addr);
    s.local = at;
    // A datagram socket's address is recorded: its session socket opens with the first sendto
    // (docs/posix.md); only a TCP bind opens something here, a listener, judged by the policy now.
    if (!s.stream) return this.ok(call);
    const sid = this.claimSid(s);
    s.state = "binding";
    s.op = { kind: "bind", call };
    this.session.handle({ ok: true, req: { op: "bind", id: sid, addr: at.address, port: at.port } });
  }

  private listen(call: Call, s: PosixSocket, backlog: number): void {
    if (!s.stream) return this.fail(call, ERRNO.EOPNOTSUPP);
    s.backlog = Math.min(Math.max(backlog, 1), MAX_ACCEPT_QUEUE);
    switch (s.state) {
      case "listening":
        return this.ok(call);
      case "bound":
        s.op = { kind: "listen", call };
        return this.session.handle({ ok: true, req: { op: "listen", id: s.sid!, backlog: s.backlog } });
      case "fresh": {
        // listen() without bind(): any free port on the wildcard address, as Linux does.
        s.local = { address: s.wildcard, port: 0 };
        const sid = this.claimSid(s);
        s.state = "binding";
        s.op = { kind: "autobind", call };
        return this.session.handle({ ok: true, req: { op: "bind", id: sid, addr: s.local.address, port: 0 } });
      }
      default:
        return this.fail(call, ERRNO.EINVAL);
    }
  }

  private listening(s: PosixSocket, port: number): void {
    const op = s.op;
    if (!op || (op.kind !== "bind" && op.kind !== "listen" && op.kind !== "autobind")) return;
    s.op = null;
    if (s.local) s.local = { address: s.local.address, port };
    s.state = op.kind === "bind" ? "bound" : "listening";
    if (op.call) this.ok(op.call);
  }

  private accept(call: Call, s: PosixSocket): void {
    if (!s.stream) return this.fail(call, ERRNO.EOPNOTSUPP);
    if (s.state !== "listening") return this.fail(call, ERRNO.EINVAL);
    if (s.acceptWaiters.length === 0 && s.acceptQueue.length > 0) return this.handOver(call, s);
    if (s.nonblock) return this.fail(call, ERRNO.EAGAIN);
    if (!this.mayPark(call)) return;
    const w: AcceptWaiter = { call };
    if (s.rcvTimeoutMs > 0) w.timer = setTimeout(() => this.acceptTimedOut(s, w), s.rcvTimeoutMs);
    s.acceptWaiters.push(w);
  }

  private acceptTimedOut(s: PosixSocket, w: AcceptWaiter): void {
    const i = s.acceptWaiters.indexOf(w);
    if (i < 0) return;
    s.acceptWaiters.splice(i, 1);
    this.fail(w.call, ERRNO.EAGAIN);
  }

  /** The oldest queued connection gets an fd and goes to `call`. */
  private handOver(call: Call, listener: PosixSocket): void {
    if (this.fds.size >= this.fdLimit || this.nextFd > MAX_FD) return this.fail(call, ERRNO.EMFILE); // it stays queued
    const conn = listener.acceptQueue.shift()!;
    const fd = this.nextFd++;
    conn.fd = fd;
    conn.fdUsedAsSid = true; // its session id is the server's; later resources take fresh ones
    this.fds.set(fd, conn);
    this.sendFrame(encodeAcceptReply(call.callId, fd, conn.peer && conn.sockaddr(conn.peer)));
  }

  private accepted(listener: PosixSocket, connId: number, remote: string): void {
    if (listener.state !== "listening" || listener.acceptQueue.length >= listener.backlog) {
      // bind() without listen() yet, or the queue is full: turned away, as a kernel would. Not
      // inside this event: the session hands the connection its socket right after it.
      setImmediate(() => this.session.handle({ ok: true, req: { op: "close", id: connId } }));
      return;
    }
    const conn = new PosixSocket(null, listener.family, SOCK.STREAM, false);
    conn.sid = connId;
    conn.state = "connected";
    conn.peer = parseRemote(remote);
    conn.upload = this.uploadFor(conn);
    this.bySid.set(connId, conn);
    listener.acceptQueue.push(conn);
    while (listener.acceptWaiters.length > 0 && listener.acceptQueue.length > 0) {
      const w = listener.acceptWaiters.shift()!;
      clearTimeout(w.timer);
      this.handOver(w.call, listener);
    }
  }

  // ---- connect ----

  private connect(call: Call, s: PosixSocket, addr: Sockaddr): void {
    if (!sameFamily(s, addr)) return this.fail(call, ERRNO.EAFNOSUPPORT);
    const to = endpoint(addr);
    if (!s.stream) return this.udpConnect(call, s, to);
    switch (s.state) {
      case "connecting":
        return this.fail(call, ERRNO.EALREADY);
      case "connected":
      case "ended":
        return this.fail(call, ERRNO.EISCONN);
      case "binding":
      case "listening":
        return this.fail(call, ERRNO.EINVAL);
      case "bound":
        // bind() made a listener; the connection's own port is wasmnet's choice (docs/posix.md).
        this.closeResource(s);
        s.state = "fresh";
        s.local = null;
        break;
      default:
        break;
    }
    if (s.soError !== 0) {
      // A non-blocking connect failed meanwhile: this call reports it.
      const e = s.soError;
      s.soError = 0;
      return this.fail(call, e);
    }
    const sid = this.claimSid(s);
    s.state = "connecting";
    s.peer = to;
    s.upload = this.uploadFor(s);
    s.op = { kind: "connect", call: s.nonblock ? null : call };
    this.session.handle({ ok: true, req: { op: "connect", id: sid, addr: to.address, port: to.port } });
    if (!s.nonblock) return;
    // Non-blocking: EINPROGRESS unless the answer came at once (a policy refusal does).
    if (s.state === "connecting") return this.fail(call, ERRNO.EINPROGRESS);
    if (s.state === "connected") return this.ok(call);
    const e = s.soError || ERRNO.ECONNREFUSED;
    s.soError = 0;
    this.fail(call, e);
  }

  private uploadFor(s: PosixSocket): UploadWindow {
    s.offered = 0;
    s.forwarded = 0;
    return new UploadWindow(this.window, (chunk) => {
      if (s.sid === null) return;
      s.forwarded += chunk.length;
      this.session.handle({ ok: true, req: { op: "send", id: s.sid, data: chunk } });
    });
  }

  private connected(s: PosixSocket): void {
    if (s.state !== "connecting") return;
    s.state = "connected";
    const op = s.op;
    s.op = null;
    if (op?.call) this.ok(op.call);
  }

  // ---- send ----

  /** send() and sendto(): a stream's bytes, or one datagram. */
  private sendCall(call: Call, s: PosixSocket, flags: number, data: Uint8Array, dest: Endpoint | null): void {
    if (!s.stream) return this.sendDatagram(call, s, data, dest);
    // sendto() on a stream socket ignores the address, as Linux does for a connected one.
    if (s.state !== "connecting" && s.state !== "connected" && s.state !== "ended") return this.fail(call, ERRNO.ENOTCONN);
    if (s.wrShut) return this.fail(call, ERRNO.EPIPE);
    if (s.state === "ended") return this.fail(call, this.takeError(s) || ERRNO.EPIPE);
    const up = s.upload!;
    if (data.length === 0) return this.ok(call, 0);
    if (nonblocking(s, flags)) {
      const room = up.room;
      if (room <= 0) return this.fail(call, ERRNO.EAGAIN);
      const part = data.length <= room ? data : data.subarray(0, room);
      s.offered += part.length;
      up.offer(part);
      return s.upload === up && s.sid !== null ? this.ok(call, part.length) : this.fail(call, this.takeError(s) || ERRNO.EPIPE);
    }
    if (up.heldBytes > 0 || up.room < data.length) {
      if (!this.mayPark(call)) return;
    }
    s.offered += data.length;
    const until = s.offered;
    up.offer(data);
    this.noteHeld(s);
    if (s.sid === null) return this.fail(call, s.soError || ERRNO.EPIPE); // the stream ended while it was handed on
    if (s.forwarded >= until) return this.ok(call, data.length);
    const w: SendWaiter = { call, bytes: data.length, until };
    if (s.sndTimeoutMs > 0) w.timer = setTimeout(() => this.sendTimedOut(s, w), s.sndTimeoutMs);
    s.sendWaiters.push(w);
  }

  /**
   * SO_SNDTIMEO ran out on a blocked send: as on Linux, it returns what went out so far, or
   * EAGAIN if nothing did, and the rest is taken back. Only the newest send can give its bytes
   * back (an older one has later bytes queued behind it); an older one completes as usual.
   */
  private sendTimedOut(s: PosixSocket, w: SendWaiter): void {
    if (s.sendWaiters[s.sendWaiters.length - 1] !== w || !s.upload) return;
    s.sendWaiters.pop();
    const taken = s.upload.withdraw(w.until - s.forwarded);
    s.offered -= taken;
    const sent = w.bytes - taken;
    if (sent > 0) this.ok(w.call, sent);
    else this.fail(w.call, ERRNO.EAGAIN);
    this.noteHeld(s);
  }

  private credited(s: PosixSocket, bytes: number): void {
    if (!s.upload) return;
    s.upload.credited(bytes);
    while (s.sendWaiters.length > 0 && s.sendWaiters[0]!.until <= s.forwarded) {
      const w = s.sendWaiters.shift()!;
      clearTimeout(w.timer);
      this.ok(w.call, w.bytes);
    }
    if (s.finPending && s.upload.heldBytes === 0) {
      s.finPending = false;
      this.sendFin(s);
    }
    this.noteHeld(s);
  }

  /**
   * Blocked sends hold their bytes here; a program has at most one per thread. Past four
   * windows in all (only many threads, or a client that is not the stub, get there) the client
   * is not read until the targets have taken half of it: a slowdown, never a loss.
   */
  private noteHeld(s: PosixSocket): void {
    // A running total: each socket's share is what it held when last noted.
    const held = s.upload && s.sid !== null ? s.upload.heldBytes : 0;
    this.heldTotal += held - s.heldNoted;
    s.heldNoted = held;
    if (this.heldTotal > 4 * this.window) this.holdInput(INPUT_PAUSE.held);
    else if (this.heldTotal <= 2 * this.window) this.releaseInput(INPUT_PAUSE.held);
  }

  // ---- recv, recvfrom ----

  private recv(call: Call, s: PosixSocket, maxlen: number, flags: number, withAddress: boolean): void {
    if (s.stream && s.state !== "connecting" && s.state !== "connected" && s.state !== "ended" && s.soError === 0) return this.fail(call, ERRNO.ENOTCONN);
    // maxlen is the program's buffer size, an unchecked u32: the reply carries at most a window.
    const cap = Math.min(maxlen, s.stream ? this.window : MAX_DATAGRAM_BYTES);
    const w: RecvWaiter = { call, cap, peek: (flags & MSG.PEEK) !== 0, waitAll: s.stream && (flags & MSG.WAITALL) !== 0, withAddress };
    if (s.stream && cap === 0) return this.sendFrame(recvReply(w, EMPTY, null, s));
    if (s.recvWaiters.length === 0) {
      const out = this.recvOutcome(s, w);
      if (out) {
        this.sendFrame(out);
        return this.updateHold(s);
      }
    }
    if (nonblocking(s, flags)) return this.fail(call, ERRNO.EAGAIN);
    if (!this.mayPark(call)) return;
    if (s.rcvTimeoutMs > 0) w.timer = setTimeout(() => this.recvTimedOut(s, w), s.rcvTimeoutMs);
    s.recvWaiters.push(w);
  }

  /** The reply `w` gets now, or null while it must wait. */
  private recvOutcome(s: PosixSocket, w: RecvWaiter): Uint8Array | null {
    const { callId, fn } = w.call;
    if (!s.stream) {
      const d = s.datagrams[0];
      if (d) {
        if (!w.peek) {
          s.datagrams.shift();
          s.datagramBytes -= d.data.length;
        }
        return recvReply(w, d.data.subarray(0, w.cap), d.from, s); // the rest of a long datagram is discarded
      }
      if (s.soError) return encodeErrorReply(fn, callId, this.takeError(s));
      if (s.rdShut) return recvReply(w, EMPTY, null, s);
      return null;
    }
    if (s.rdShut) return recvReply(w, EMPTY, null, s);
    const n = s.inbox.size;
    const ended = s.remoteEnded || s.state === "ended";
    if (n > 0 && (!w.waitAll || n >= w.cap || ended)) return recvReply(w, s.inbox.take(w.cap, w.peek), null, s);
    if (s.soError) return encodeErrorReply(fn, callId, this.takeError(s));
    if (ended) return recvReply(w, EMPTY, null, s); // orderly end of stream
    if (s.state !== "connecting" && s.state !== "connected") return encodeErrorReply(fn, callId, ERRNO.ENOTCONN);
    return null;
  }

  /**
   * Answers the waiting recvs that can be answered, oldest first; while the client does not
   * read its replies they wait (up to MAX_PARKED_CALLS MSG_PEEKs could each take a window).
   */
  private serveRecv(s: PosixSocket): void {
    while (s.recvWaiters.length > 0 && !this.repliesHeld) {
      const w = s.recvWaiters[0]!;
      const out = this.recvOutcome(s, w);
      if (!out) break;
      s.recvWaiters.shift();
      clearTimeout(w.timer);
      this.sendFrame(out);
    }
    this.updateHold(s);
  }

  private recvTimedOut(s: PosixSocket, w: RecvWaiter): void {
    const i = s.recvWaiters.indexOf(w);
    if (i < 0) return;
    s.recvWaiters.splice(i, 1);
    this.fail(w.call, ERRNO.EAGAIN);
    this.serveRecv(s); // a MSG_WAITALL that timed out may have held up the others
  }

  protected override repliesWanted(): void {
    for (const s of this.fds.values()) {
      if (this.repliesHeld) return;
      if (s.recvWaiters.length > 0) this.serveRecv(s);
    }
  }

  /** The target is read only while the receive buffer has room. */
  private updateHold(s: PosixSocket): void {
    if (!s.stream || s.sid === null) return;
    const full = s.inbox.size >= this.window;
    if (full === s.readHeld) return;
    s.readHeld = full;
    this.session.holdReading(s.sid, full);
  }

  private takeError(s: PosixSocket): number {
    const e = s.soError;
    s.soError = 0;
    return e;
  }

  // ---- UDP ----

  private sendDatagram(call: Call, s: PosixSocket, data: Uint8Array, dest: Endpoint | null): void {
    const to = dest ?? s.peer;
    if (!to) return this.fail(call, ERRNO.EDESTADDRREQ);
    if (s.wrShut) return this.fail(call, ERRNO.EPIPE);
    if (data.length > MAX_DATAGRAM_BYTES) return this.fail(call, ERRNO.EMSGSIZE);
    this.datagramTo(call, s, to, data);
  }

  private datagramTo(call: Call, s: PosixSocket, to: Endpoint, data: Uint8Array): void {
    if (s.state === "open") return this.forwardDatagram(call, s, to, data);
    if (!this.mayPark(call)) return;
    s.pendingDatagrams.push({ call, dest: to, data });
    // The first datagram opens the session's UDP socket toward its destination (the gate judges it).
    if (s.state === "fresh") this.udpOpen(s, to, null);
  }

  private udpOpen(s: PosixSocket, to: Endpoint, connect: Call | null): void {
    const sid = this.claimSid(s);
    s.state = "opening";
    s.op = connect ? { kind: "udp-connect", call: connect, peer: to } : null;
    this.session.handle({ ok: true, req: { op: "connect_udp", id: sid, addr: to.address, port: to.port } });
  }

  private udpConnect(call: Call, s: PosixSocket, to: Endpoint): void {
    if (s.state === "opening") return this.fail(call, ERRNO.EALREADY);
    if (s.state === "open") {
      // A new peer: the session socket is opened again toward it, so the policy judges it now.
      this.closeResource(s);
      s.state = "fresh";
    }
    this.udpOpen(s, to, call);
  }

  private udpBound(s: PosixSocket, port: number): void {
    if (s.state !== "opening") return;
    s.state = "open";
    s.local = { address: s.local?.address ?? s.wildcard, port };
    const op = s.op;
    s.op = null;
    if (op?.kind === "udp-connect" && op.peer) {
      s.peer = op.peer;
      // Connected: only its peer's datagrams from now on.
      const keep = s.datagrams.filter((d) => samePeer(d.from, op.peer!));
      s.datagrams.length = 0;
      s.datagrams.push(...keep);
      s.datagramBytes = keep.reduce((n, d) => n + d.data.length, 0);
      if (op.call) this.ok(op.call);
    }
    this.flushDatagrams(s);
  }

  private flushDatagrams(s: PosixSocket): void {
    for (const p of s.pendingDatagrams.splice(0)) this.datagramTo(p.call, s, p.dest, p.data);
  }

  private forwardDatagram(call: Call, s: PosixSocket, to: Endpoint, data: Uint8Array): void {
    const sid = s.sid!;
    // An IP destination is judged synchronously: a refusal or error for this datagram arrives
    // during the call, and is this sendto's answer.
    const capture = (this.capture = { sid, ev: null as Event | null });
    try {
      this.session.handle({ ok: true, req: { op: "send_to", id: sid, addr: to.address, port: to.port, data } });
    } finally {
      this.capture = null;
    }
    const ev = capture.ev;
    if (!ev) return this.ok(call, data.length); // sent, or dropped over the bandwidth limit and counted
    if (ev.ev === "denied") return this.fail(call, ERRNO.EACCES);
    if (ev.ev !== "error") return this.ok(call, data.length);
    const errno = posixErrno(ev.code);
    if (udpSocketEnds(ev)) this.udpFailed(s, errno, false);
    this.fail(call, errno);
  }

  /** The session's UDP socket could not be opened, or is gone (idle timeout, daily quota). */
  private udpFailed(s: PosixSocket, errno: number, opening: boolean): void {
    this.unmap(s);
    s.state = "fresh";
    const op = s.op;
    s.op = null;
    if (!opening) {
      s.soError = errno; // recv and SO_ERROR report it
      return this.serveRecv(s);
    }
    if (op?.call) this.fail(op.call, errno);
    else {
      const first = s.pendingDatagrams.shift();
      if (first) this.fail(first.call, errno);
    }
    // The others are attempts of their own: the next opens toward its own destination.
    this.flushDatagrams(s);
  }

  private datagram(s: PosixSocket, data: Uint8Array, addr: string, port: number): void {
    if (s.rdShut) return;
    const from = { address: addr, port };
    if (s.peer && !samePeer(from, s.peer)) return;
    if (s.datagrams.length >= MAX_DATAGRAMS || s.datagramBytes + data.length > this.window) {
      // The program is not taking them: dropped and counted, like datagrams toward a full client.
      return this.session.ctx.metrics.udpDropped("backpressure");
    }
    s.datagrams.push({ data, from });
    s.datagramBytes += data.length;
    this.serveRecv(s);
  }

  // ---- names and options ----

  private getpeername(call: Call, s: PosixSocket): void {
    const connected = s.stream ? s.state === "connected" || s.state === "ended" : s.state === "open";
    if (!s.peer || !connected) return this.fail(call, ERRNO.ENOTCONN);
    this.sendFrame(encodeSocknameReply(call.callId, s.sockaddr(s.peer)));
  }

  private getsockopt(call: Call, s: PosixSocket, level: number, name: number): void {
    const int = (v: number) => this.sendFrame(encodeGetsockoptReply(call.callId, optionInt(v)));
    if (level === SOL_SOCKET) {
      switch (name) {
        case SO.ERROR:
          return int(this.takeError(s));
        case SO.TYPE:
          return int(s.type);
        case SO.DOMAIN:
          return int(s.family);
        case SO.PROTOCOL:
          return int(s.protocol);
        case SO.ACCEPTCONN:
          return int(s.state === "listening" ? 1 : 0);
        case SO.RCVBUF:
        case SO.SNDBUF:
          if (!s.option(level, name)) return int(this.window);
      }
    }
    const shape = this.applicable(s, level, name);
    if (!shape) return this.fail(call, ERRNO.ENOPROTOOPT);
    this.sendFrame(encodeGetsockoptReply(call.callId, s.option(level, name) ?? new Uint8Array(optionBytes(shape))));
  }

  private setsockopt(call: Call, s: PosixSocket, level: number, name: number, value: Uint8Array): void {
    const shape = this.applicable(s, level, name);
    if (!shape) return this.fail(call, ERRNO.ENOPROTOOPT);
    const size = optionBytes(shape);
    if (value.length < size) return this.fail(call, ERRNO.EINVAL);
    let stored = value.subarray(0, size);
    if (shape === "bool") stored = optionInt(readOptionInt(value) !== 0 ? 1 : 0);
    if (shape === "timeval") {
      const ms = readOptionTimeval(value);
      if (ms === null) return this.fail(call, ERRNO.EINVAL);
      if (level === SOL_SOCKET && name === SO.RCVTIMEO) s.rcvTimeoutMs = ms;
      if (level === SOL_SOCKET && name === SO.SNDTIMEO) s.sndTimeoutMs = ms;
    }
    s.setOption(level, name, stored);
    this.ok(call);
  }

  private applicable(s: PosixSocket, level: number, name: number): ReturnType<typeof optionShape> {
    if (level === IPPROTO.TCP && !s.stream) return null;
    if (level === IPPROTO.IPV6 && (s.family !== AF.INET6 || name !== IPV6_V6ONLY)) return null;
    return optionShape(level, name);
  }

  /** Whether one more call may wait; if not it is answered ENOBUFS (only a client that is not the stub gets here). */
  private mayPark(call: Call): boolean {
    let parked = this.lookups.size;
    for (const s of this.fds.values()) parked += s.parked;
    if (parked < MAX_PARKED_CALLS) return true;
    this.session.noteError(0, "ELIMIT", `posix: more than ${MAX_PARKED_CALLS} calls waiting`);
    this.fail(call, ERRNO.ENOBUFS);
    return false;
  }

  // ---- session → client ----

  send(ev: Event): void {
    if (this.gone) return;
    const l = this.lookups.get(ev.id);
    if (l) return this.lookupDone(ev.id, l, ev);
    const s = this.bySid.get(ev.id);
    if (!s) return; // a socket the program let go of
    const c = this.capture;
    if (c && c.sid === ev.id && (ev.ev === "error" || ev.ev === "denied")) {
      c.ev = ev;
      return;
    }
    switch (ev.ev) {
      case "connected":
        return this.connected(s);
      case "data":
        if (s.rdShut) return; // discarded after shutdown(SHUT_RD)
        s.inbox.push(ev.data);
        return this.serveRecv(s);
      case "end":
        s.remoteEnded = true;
        return this.serveRecv(s);
      case "credit":
        return this.credited(s, ev.bytes);
      case "listening":
        return this.listening(s, ev.port);
      case "accepted":
        return this.accepted(s, ev.connId, ev.remote);
      case "udp_bound":
        return this.udpBound(s, ev.port);
      case "data_from":
        return this.datagram(s, ev.data, ev.addr, ev.port);
      case "closed":
        return this.ended(s, 0, ev);
      case "error":
        return this.ended(s, posixErrno(ev.code), ev);
      case "denied":
        return this.ended(s, ERRNO.EACCES, ev);
      default:
        return;
    }
  }

  /** The session ended the socket's resource: `errno` 0 for an orderly close. */
  private ended(s: PosixSocket, errno: number, ev: Extract<Event, { ev: "closed" | "error" | "denied" }>): void {
    const op = s.op;
    switch (s.state) {
      case "opening":
        return this.udpFailed(s, errno || ERRNO.ECONNREFUSED, true);
      case "open":
        // Only the session's own decisions end a UDP socket unasked (idle timeout, daily quota).
        if (!udpSocketEnds(ev)) return;
        return this.udpFailed(s, errno || ERRNO.ECONNRESET, false);
      case "binding":
        this.unmap(s);
        s.state = "fresh";
        s.local = null;
        s.op = null;
        if (op?.call) this.fail(op.call, errno || ERRNO.EADDRNOTAVAIL);
        return;
      case "connecting": {
        // connect() failed: the socket may try again (with a fresh session id).
        this.unmap(s);
        s.state = "fresh";
        s.op = null;
        this.dropUpload(s, errno || ERRNO.ECONNREFUSED);
        if (op?.call) this.fail(op.call, errno || ERRNO.ECONNREFUSED);
        else s.soError = errno || ERRNO.ECONNREFUSED; // non-blocking: SO_ERROR and the next connect tell
        return this.serveRecv(s);
      }
      case "connected":
        this.unmap(s);
        s.state = "ended";
        s.remoteEnded = true;
        if (errno) s.soError = errno;
        this.dropUpload(s, errno || ERRNO.EPIPE);
        return this.serveRecv(s);
      default:
        // A listener the session closed (it never does unasked): accept() has nothing more to give.
        this.unmap(s);
        s.state = "ended";
        if (op?.call) this.fail(op.call, errno || ERRNO.EINVAL);
        s.op = null;
        for (const w of s.acceptWaiters.splice(0)) {
          clearTimeout(w.timer);
          this.fail(w.call, errno || ERRNO.EINVAL);
        }
    }
  }

  /** The stream is gone: what waited for window room is not sent, and its callers hear why. */
  private dropUpload(s: PosixSocket, errno: number): void {
    s.upload?.clear();
    s.finPending = false;
    for (const w of s.sendWaiters.splice(0)) {
      clearTimeout(w.timer);
      this.fail(w.call, errno);
    }
    this.noteHeld(s);
  }

  /** The WebSocket is closing: the session closes every resource; timers stop here. */
  protected override closing(): void {
    this.gone = true;
    const all = new Set([...this.fds.values(), ...this.bySid.values()]);
    for (const s of all) this.release(s, false);
    this.fds.clear();
    this.bySid.clear();
    this.lookups.clear();
    this.heldTotal = 0;
  }
}

function nonblocking(s: PosixSocket, flags: number): boolean {
  return s.nonblock || (flags & MSG.DONTWAIT) !== 0;
}

function sameFamily(s: PosixSocket, addr: Sockaddr): boolean {
  return (addr.family === "ipv4") === (s.family === AF.INET);
}

/** An address from the program in the session's canonical form (::ffff:a.b.c.d is a.b.c.d). */
function endpoint(addr: Sockaddr): Endpoint {
  return { address: canonicalIp(addr.address) ?? addr.address, port: addr.port };
}

/** Both are canonical (endpoint() above, or the session's own addresses). */
function samePeer(a: Endpoint, b: Endpoint): boolean {
  return a.port === b.port && a.address === b.address;
}

/** "ip:port" or "[ip]:port", as the session reports an accepted connection's peer. */
function parseRemote(remote: string): Endpoint | null {
  const hp = splitHostPort(remote);
  return hp?.isIp ? { address: hp.host, port: hp.port } : null;
}

function recvReply(w: RecvWaiter, data: Uint8Array, from: Endpoint | null, s: PosixSocket): Uint8Array {
  return w.withAddress ? encodeRecvfromReply(w.call.callId, data, from && s.sockaddr(from)) : encodeRecvReply(w.call.callId, data);
}
