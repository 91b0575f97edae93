// WasmnetClient: the browser side of the wasmnet protocol (docs/protocol.md; README.md#browser-client).
//
// One WebSocket carries every socket of the session. The client picks ids 1, 2, 3, …; the server
// picks the ids of accepted inbound connections. By default it negotiates version 2 (`hello`) and,
// when the server grants `flow`, never has more than `window` unacknowledged bytes per stream: data
// beyond the credit waits in a per-stream queue and goes out as `credit` events arrive.
//
// With `{ token }` the token rides as the subprotocol `wasmnet.bearer.<token>` next to `wasmnet`.
// A session the server refuses before the upgrade (bad token, origin, limits) fails the WebSocket
// without a reason a browser can read; refusal.ts asks the server once and makes it a typed error.
import {
  DEFAULT_BACKLOG,
  FEATURES,
  PROTOCOL_VERSION,
  decodeBinaryEvent,
  decodeJsonEvent,
  encodeBinaryRequest,
  encodeJsonRequest,
  type Event,
  type HelloLimits,
  type Request,
} from "../../src/protocol/index.ts";
import { installBase64Fallback, toBytes, type Data } from "./bytes.ts";
import { WasmnetError, type WasmnetErrorCode } from "./errors.ts";
import { whyRefused, withToken } from "./refusal.ts";
import { socketStream, type SocketStream, type StreamOptions, type StreamSink } from "./streams.ts";

installBase64Fallback();

export interface WasmnetClientOptions {
  /** Use the binary framing instead of JSON text frames. Default false. */
  binary?: boolean;
  /** 2 (default): send `hello` and use what the server grants. 1: speak version 1 exactly. */
  version?: 1 | 2;
  /** How long to wait for the answer to `hello` before assuming a version-1 server. Default 1000 ms. */
  helloTimeoutMs?: number;
  /** Largest payload of one `send` message. Default 64 KiB, lowered to fit the server's `max_message_bytes`. */
  chunkBytes?: number;
  /**
   * Without flow control (version 1), `sendAsync` resolves once the WebSocket's own
   * `bufferedAmount` is at or below this many bytes. Default 1 MiB.
   */
  v1HighWaterMark?: number;
  /**
   * A token (JWT) from the operator's app, for a server whose policy has an `[auth]` table. Sent as
   * the WebSocket subprotocol `wasmnet.bearer.<token>` offered after `wasmnet` (the server selects
   * `wasmnet`, never the token). A token with characters a subprotocol cannot carry goes in the
   * URL as `?token=` instead. A refused token makes {@link WasmnetClient.ready} reject with `EAUTH`.
   */
  token?: string;
  /**
   * How the client learns why a WebSocket failed before it opened (browsers do not tell): one plain
   * GET to the same URL, which the server answers with the refusal's status and reason. Defaults to
   * `globalThis.fetch`; `null` turns the question off (the failure is then plain `ECLOSED`).
   */
  fetch?: typeof globalThis.fetch | null;
  /** WebSocket implementation; defaults to `globalThis.WebSocket`. */
  WebSocket?: new (url: string | URL, protocols?: string | string[]) => WebSocket;
}

/** Options of {@link WasmnetClient.openAndSend}. */
export interface OpenAndSendOptions {
  /** Open a TLS stream (`connect_tls`: the server does the handshake). Default false. */
  tls?: boolean;
}

export type DataCallback = (data: Uint8Array) => void;
export type DataFromCallback = (data: Uint8Array, addr: string, port: number) => void;
/** Called once when the socket is gone; `error` says why when it did not close normally. */
export type CloseCallback = (error?: WasmnetError) => void;
export type EndCallback = () => void;
export type AcceptCallback = (connId: number, remote: string) => void;
export type ErrorCallback = (error: WasmnetError) => void;

type Kind = "tcp" | "tls" | "udp" | "listener";

interface Write {
  bytes: Uint8Array;
  off: number;
  resolve?: () => void;
  reject?: (e: WasmnetError) => void;
}

interface Sock {
  id: number;
  kind: Kind;
  state: "opening" | "open" | "closed";
  /** An openAndSend made before negotiation settled: its open request has not gone out yet. */
  unsent?: { op: "connect" | "connect_tls"; addr: string; port: number };
  /** close() or shutdown() was called: no more sends. */
  sendClosed: boolean;
  closeAfterFlush: boolean;
  finAfterFlush: boolean;
  /** Bytes this stream may still send (Infinity without flow control). */
  credit: number;
  queue: Write[];
  queued: number;
  // Inbound data and events not yet delivered, replayed when a callback is set.
  inbox: Uint8Array[];
  inboxFrom: [Uint8Array, string, number][];
  acceptQ: [number, string][];
  ended: boolean;
  closeError: WasmnetError | undefined;
  closeFired: boolean;
  endFired: boolean;
  port?: number;
  onData?: DataCallback;
  onDataFrom?: DataFromCallback;
  onClose?: CloseCallback;
  onEnd?: EndCallback;
  onAccept?: AcceptCallback;
  onError?: ErrorCallback;
  sink?: StreamSink;
}

interface PendingOp {
  op: Request["op"];
  resolve: (v: never) => void;
  reject: (e: WasmnetError) => void;
}

const GRAVEYARD_MAX = 1024;
/** The wasmnet protocol's own subprotocol name, offered first so no server can echo the token entry. */
const SUBPROTOCOL = "wasmnet";
const BEARER_PREFIX = "wasmnet.bearer.";
/** Characters a subprotocol (an HTTP token, RFC 6455 §4.1) may hold; a JWT's base64url and dots fit. */
const SUBPROTOCOL_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]*$/;

const WS_CONNECTING = 0;
const WS_OPEN = 1;

/** Run a user callback; a throwing callback is reported, never allowed to break the client. */
function safe(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (typeof reportError === "function") reportError(e);
    else setTimeout(() => { throw e; });
  }
}

export class WasmnetClient {
  readonly url: string;
  private readonly binary: boolean;
  private readonly ws: WebSocket;
  private readonly wantVersion: 1 | 2;
  private readonly helloTimeoutMs: number;
  private readonly v1HighWaterMark: number;
  private chunk: number;

  private negotiated = false;
  private readonly negotiation: Promise<void>;
  private settleNegotiation!: (err?: WasmnetError) => void;
  private helloTimer: ReturnType<typeof setTimeout> | undefined;

  private _version = 1;
  private _features: string[] = [];
  private _window = Infinity;
  private _limits: HelloLimits | undefined;
  private _identity: string | null | undefined;
  private _profile: string | null | undefined;
  private wsOpened = false;
  private readonly fetchFn: typeof globalThis.fetch | null;
  private readonly token: string | undefined;
  /** openAndSend calls made before negotiation settled, in call order. */
  private deferred: Sock[] = [];

  private nextId = 1;
  private readonly sockets = new Map<number, Sock>();
  private readonly graveyard = new Map<number, Sock>();
  private readonly pending = new Map<number, PendingOp>();
  private drainWaiters: { resolve: () => void; reject: (e: WasmnetError) => void }[] = [];
  private drainTimer: ReturnType<typeof setTimeout> | undefined;
  private down: WasmnetError | undefined;
  private sessionErrorCb: ErrorCallback | undefined;

  constructor(url: string, options: WasmnetClientOptions = {}) {
    this.url = url;
    this.binary = options.binary ?? false;
    this.wantVersion = options.version ?? 2;
    this.helloTimeoutMs = options.helloTimeoutMs ?? 1000;
    this.v1HighWaterMark = options.v1HighWaterMark ?? 1 << 20;
    this.chunk = Math.max(1, Math.floor(options.chunkBytes ?? 64 * 1024));

    this.negotiation = new Promise<void>((resolve, reject) => {
      this.settleNegotiation = (err) => {
        if (this.negotiated) return;
        this.negotiated = true;
        if (this.helloTimer !== undefined) clearTimeout(this.helloTimer);
        if (err) {
          reject(err);
          return;
        }
        resolve();
        this.sendDeferred();
      };
    });
    // Nobody may ever call ready(); a failed connection must not become an unhandled rejection.
    this.negotiation.catch(() => {});

    const g = globalThis as { fetch?: typeof globalThis.fetch };
    this.fetchFn = options.fetch === null ? null : (options.fetch ?? (typeof g.fetch === "function" ? g.fetch.bind(globalThis) : null));
    this.token = options.token;
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (this.token === undefined) this.ws = new WS(url);
    else if (SUBPROTOCOL_CHARS.test(this.token)) this.ws = new WS(url, [SUBPROTOCOL, BEARER_PREFIX + this.token]);
    else this.ws = new WS(withToken(url, this.token));
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => this.opened();
    this.ws.onmessage = (ev: MessageEvent) => this.message(ev.data);
    this.ws.onclose = (ev: CloseEvent) => {
      const closed = new WasmnetError("ECLOSED", `WebSocket to ${url} closed (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ""})`);
      if (this.wsOpened || this.down) this.teardown(closed);
      // Failed before it opened: the browser hides the HTTP answer, so ask the server why.
      else void whyRefused(this.fetchFn, url, this.token, closed).then((err) => this.teardown(err));
    };
    this.ws.onerror = () => {}; // a close event follows and carries the news
  }

  // ---- session ----

  /** Resolves once the WebSocket is open and the protocol version is settled. */
  ready(): Promise<void> {
    return this.negotiation;
  }

  /** Negotiated protocol version: 2 after a successful `hello`, else 1. */
  get version(): number {
    return this._version;
  }
  /** Features the server granted (`flow`, `half_close`). */
  get features(): readonly string[] {
    return this._features;
  }
  /** Send window per stream in bytes (Infinity without flow control). */
  get window(): number {
    return this._window;
  }
  /** Limits the server announced in its `hello`, if any. */
  get limits(): HelloLimits | undefined {
    return this._limits;
  }
  /**
   * Who the server says this session is (the token's `sub`), from its `hello` answer: null for an
   * anonymous session, undefined when the server did not say (version 1, or before ready()).
   */
  get identity(): string | null | undefined {
    return this._identity;
  }
  /** The policy profile the session runs under: null for the top-level policy, undefined as for {@link identity}. */
  get profile(): string | null | undefined {
    return this._profile;
  }
  /** The underlying WebSocket (for diagnostics such as `bufferedAmount`). */
  get webSocket(): WebSocket {
    return this.ws;
  }
  private get flow(): boolean {
    return this._features.includes("flow");
  }

  /** Session-level errors (`error` on id 0) after negotiation. Default: console.warn. */
  onSessionError(cb: ErrorCallback): void {
    this.sessionErrorCb = cb;
  }

  /** Close the WebSocket. Pending promises reject with `ECLOSED`; open sockets' onClose fire. */
  disconnect(): void {
    this.teardown(new WasmnetError("ECLOSED", "disconnect() was called"));
    if (this.ws.readyState === WS_CONNECTING || this.ws.readyState === WS_OPEN) this.ws.close(1000, "disconnect");
  }

  // ---- operations that answer ----

  connect(addr: string, port: number): Promise<number> {
    return this.open("connect", "tcp", addr, port);
  }

  connectTls(addr: string, port: number): Promise<number> {
    return this.open("connect_tls", "tls", addr, port);
  }

  connectUdp(addr: string, port: number): Promise<{ id: number; port: number }> {
    return this.open("connect_udp", "udp", addr, port);
  }

  bind(addr: string, port: number): Promise<{ id: number; port: number }> {
    return this.open("bind", "listener", addr, port);
  }

  async resolve(name: string): Promise<string[]> {
    await this.negotiation;
    this.check();
    const id = this.allocId();
    return new Promise<string[]>((resolve, reject) => {
      this.pending.set(id, { op: "resolve", resolve: resolve as never, reject });
      this.transmit({ op: "resolve", id, name });
    });
  }

  private async open<T>(op: "connect" | "connect_tls" | "connect_udp" | "bind", kind: Kind, addr: string, port: number): Promise<T> {
    await this.negotiation;
    this.check();
    const id = this.allocId();
    const sock = this.newSock(id, kind, "opening");
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { op, resolve: resolve as never, reject });
      this.sockets.set(id, sock);
      this.transmit({ op, id, addr, port });
    });
  }

  /**
   * Open a TCP stream (TLS with `{ tls: true }`) and send `data` right behind the `connect`, without
   * waiting for `connected`: the server queues the bytes and writes them once the connection is up,
   * which saves a round trip on the first request. Returns the stream's id at once; send more, set
   * callbacks or take a `stream(id)` view straight away. Called before {@link ready} settles, the
   * open goes out as soon as it does.
   *
   * A failed open (`EPOLICY`, `ECONNREFUSED`, `ETLS`, `ELIMIT`, …) ends the stream: `onClose(id)`
   * gets the error (and `onError`, when set), writes still waiting reject with it, and later sends
   * throw `ECLOSED`. Bytes sent before `connected` spend the flow-control window like any others.
   * Throws `ECLOSED` if the session is already gone.
   */
  openAndSend(addr: string, port: number, data?: Data, options: OpenAndSendOptions = {}): number {
    this.check();
    const kind: Kind = options.tls ? "tls" : "tcp";
    const op = options.tls ? "connect_tls" : "connect";
    const bytes = data === undefined ? undefined : toBytes(data);
    const id = this.allocId();
    const sock = this.newSock(id, kind, "opening");
    this.sockets.set(id, sock);
    if (this.negotiated) {
      this.transmit({ op, id, addr, port });
    } else {
      // The window is not known yet: everything waits in the queue (copied) until the open goes out.
      sock.unsent = { op, addr, port };
      sock.credit = 0;
      this.deferred.push(sock);
    }
    if (bytes !== undefined) this.enqueue(sock, bytes);
    return id;
  }

  // ---- fire-and-forget operations ----

  /** Set a listener's backlog (advisory); the server answers `listening` again. */
  listen(id: number, backlog: number = DEFAULT_BACKLOG): void {
    const sock = this.live(id, "listen");
    if (sock.kind !== "listener") throw new WasmnetError("EBADID", `listen: ${id} is not a listener`, id);
    this.transmit({ op: "listen", id, backlog });
  }

  /**
   * Send bytes on a stream (strings as UTF-8), or one datagram on a UDP socket. With flow control,
   * bytes beyond the stream's credit are copied into a queue and sent as credit arrives; use
   * {@link sendAsync} or {@link bufferedAmount} to wait for it.
   */
  send(id: number, data: Data): void {
    const sock = this.live(id, "send");
    const bytes = toBytes(data);
    if (sock.kind === "udp") {
      this.transmit({ op: "send", id, data: bytes });
      return;
    }
    this.enqueue(sock, bytes);
  }

  /**
   * Like {@link send}, resolving once every byte has been handed to the WebSocket — with flow
   * control, once it fits in the stream's window; without it, once the WebSocket's buffer is
   * below `v1HighWaterMark`. Rejects if the stream closes first.
   */
  async sendAsync(id: number, data: Data): Promise<void> {
    const sock = this.live(id, "send");
    const bytes = toBytes(data);
    if (sock.kind === "udp") {
      this.transmit({ op: "send", id, data: bytes });
    } else {
      await new Promise<void>((resolve, reject) => this.enqueue(sock, bytes, resolve, reject));
    }
    if (!this.flow || sock.kind === "udp") await this.wsDrained();
  }

  /** Bytes accepted by send/sendAsync on this stream and not yet handed to the WebSocket. */
  bufferedAmount(id: number): number {
    return this.find(id)?.queued ?? 0;
  }

  /** Send one datagram to addr:port from a UDP socket. */
  sendTo(id: number, addr: string, port: number, data: Data): void {
    const sock = this.live(id, "sendTo");
    if (sock.kind !== "udp") throw new WasmnetError("EBADID", `sendTo: ${id} is not a UDP socket`, id);
    this.transmit({ op: "send_to", id, addr, port, data: toBytes(data) });
  }

  /**
   * Half-close: send FIN toward the target once the queued bytes are out. Reading goes on.
   * Needs the `half_close` feature (version 2); throws `ENOTSUP` without it.
   */
  shutdown(id: number): void {
    const sock = this.live(id, "shutdown");
    if (!this._features.includes("half_close"))
      throw new WasmnetError("ENOTSUP", "shutdown: the server did not grant half_close", id);
    if (sock.kind === "udp" || sock.kind === "listener") throw new WasmnetError("EBADID", `shutdown: ${id} is not a stream`, id);
    sock.sendClosed = true;
    sock.finAfterFlush = true;
    this.pump(sock);
  }

  /**
   * Close a socket or listener. Bytes still queued for want of credit go out first, then the
   * close; onClose fires when the server confirms (`closed`). Closing a closed id does nothing.
   */
  close(id: number): void {
    const sock = this.sockets.get(id);
    if (!sock || sock.state === "closed" || sock.closeAfterFlush) return;
    if (this.down) return;
    sock.sendClosed = true;
    sock.closeAfterFlush = true;
    this.pump(sock);
  }

  // ---- callbacks ----

  /** Stream data. Data that arrived before the callback was set is replayed at once. */
  onData(id: number, cb: DataCallback): void {
    const sock = this.find(id);
    if (!sock) return;
    sock.onData = cb;
    if (sock.sink) return; // stream(id) consumes the data
    this.flushInbox(sock);
  }

  /** UDP datagrams with their sender. Datagrams that arrived earlier are replayed. */
  onDataFrom(id: number, cb: DataFromCallback): void {
    const sock = this.find(id);
    if (!sock) return;
    sock.onDataFrom = cb;
    const q = sock.inboxFrom;
    sock.inboxFrom = [];
    for (const [d, a, p] of q) safe(() => cb(d, a, p));
  }

  /** Called once when the socket or listener is gone (also when the WebSocket drops). */
  onClose(id: number, cb: CloseCallback): void {
    const sock = this.find(id);
    if (!sock) {
      // An id this client no longer knows is closed.
      if (id >= 1 && id < this.nextId) safe(() => cb());
      return;
    }
    sock.onClose = cb;
    if (sock.state === "closed" && !sock.closeFired) this.fireClose(sock);
  }

  /** The target half-closed (version 2 `half_close`); sending may go on. */
  onEnd(id: number, cb: EndCallback): void {
    const sock = this.find(id);
    if (!sock) return;
    sock.onEnd = cb;
    if (sock.ended && !sock.endFired) {
      sock.endFired = true;
      safe(cb);
    }
  }

  /** Inbound connections on a listener. Connections accepted earlier are replayed. */
  onAccept(listenerId: number, cb: AcceptCallback): void {
    const sock = this.find(listenerId);
    if (!sock) return;
    sock.onAccept = cb;
    const q = sock.acceptQ;
    sock.acceptQ = [];
    for (const [c, r] of q) safe(() => cb(c, r));
  }

  /** Errors on an open socket that did not come with a pending promise (e.g. `ELIMIT`, a denied `sendTo`). */
  onError(id: number, cb: ErrorCallback): void {
    const sock = this.find(id);
    if (sock) sock.onError = cb;
  }

  /**
   * A web-streams view of a TCP/TLS stream. The readable takes over the socket's data (instead of
   * onData); the writable's write() resolves when the chunk fits in the flow-control window, and
   * its close() half-closes (when `half_close` was granted).
   */
  stream(id: number, options: StreamOptions = {}): SocketStream {
    const sock = this.find(id);
    if (!sock) throw new WasmnetError("EBADID", `stream: unknown id ${id}`, id);
    if (sock.kind === "udp" || sock.kind === "listener") throw new WasmnetError("EBADID", `stream: ${id} is not a stream`, id);
    if (sock.sink) throw new WasmnetError("EBADREQ", `stream: ${id} already has a stream`, id);
    const s = socketStream(
      {
        write: (bytes) => this.sendAsync(id, bytes),
        end: () => {
          if (this._features.includes("half_close") && sock.state !== "closed" && !sock.sendClosed) this.shutdown(id);
        },
        close: () => this.close(id),
      },
      options,
    );
    sock.sink = s.sink;
    const q = sock.inbox;
    sock.inbox = [];
    for (const d of q) s.sink.data(d);
    if (sock.ended) s.sink.end();
    if (sock.state === "closed") s.sink.close(sock.closeError);
    return s.stream;
  }

  // ---- internals: WebSocket ----

  private opened(): void {
    this.wsOpened = true;
    if (this.down) return;
    if (this.wantVersion === 1) {
      this.settleNegotiation();
      return;
    }
    this.transmit({ op: "hello", id: 0, version: PROTOCOL_VERSION, features: [...FEATURES] });
    this.helloTimer = setTimeout(() => this.settleNegotiation(), this.helloTimeoutMs);
  }

  private message(raw: unknown): void {
    let e: Event;
    try {
      e = typeof raw === "string" ? decodeJsonEvent(raw) : decodeBinaryEvent(new Uint8Array(raw as ArrayBuffer));
    } catch (err) {
      console.warn(`wasmnet: ignoring an event the client cannot read: ${(err as Error).message}`);
      return;
    }
    if (e.ev === "hello") {
      this.hello(e);
      return;
    }
    if (!this.negotiated) {
      // A version-1 server answers the unknown op "hello" with an error on id 0.
      this.settleNegotiation();
      if (e.ev === "error" && e.id === 0) return;
    }
    this.dispatch(e);
  }

  private hello(e: Extract<Event, { ev: "hello" }>): void {
    // A hello that arrives after we gave up waiting is only taken while no socket exists yet.
    if (this.negotiated && (this.sockets.size > 0 || this.nextId > 1)) {
      console.warn("wasmnet: the server's hello arrived after the client fell back to version 1; staying on version 1");
      return;
    }
    this._version = e.version;
    this._features = (e.features as string[]).filter((f) => (FEATURES as readonly string[]).includes(f));
    if (this.flow) {
      if (!(e.window > 0)) this._features = this._features.filter((f) => f !== "flow");
      else this._window = e.window;
    }
    this._limits = e.limits;
    this._identity = e.identity;
    this._profile = e.profile;
    const maxMsg = e.limits?.max_message_bytes;
    if (typeof maxMsg === "number" && maxMsg > 0) {
      // Fits both framings: base64 grows data by 4/3, plus the JSON envelope or binary header.
      this.chunk = Math.max(1, Math.min(this.chunk, Math.floor(((maxMsg - 128) * 3) / 4)));
    }
    this.settleNegotiation();
  }

  private transmit(req: Request): void {
    if (this.down || this.ws.readyState !== WS_OPEN) return;
    this.ws.send(this.binary ? (encodeBinaryRequest(req) as Uint8Array<ArrayBuffer>) : encodeJsonRequest(req));
  }

  /** Negotiation is settled: send the opens openAndSend had to hold, then their data. */
  private sendDeferred(): void {
    for (const sock of this.deferred.splice(0)) {
      const u = sock.unsent;
      if (!u || sock.state === "closed") continue;
      sock.unsent = undefined;
      sock.credit = this.initialCredit(sock.kind);
      this.transmit({ op: u.op, id: sock.id, addr: u.addr, port: u.port });
      this.pump(sock);
    }
  }

  /** The WebSocket is gone: reject everything pending and close every socket. Idempotent. */
  private teardown(err: WasmnetError): void {
    if (this.down) return;
    this.down = err;
    this.deferred = [];
    this.settleNegotiation(err);
    if (this.drainTimer !== undefined) clearTimeout(this.drainTimer);
    for (const w of this.drainWaiters.splice(0)) w.reject(err);
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(new WasmnetError(err.code, `${p.op}: ${err.message}`));
    for (const sock of [...this.sockets.values()]) this.finish(sock, err);
  }

  // ---- internals: events ----

  private dispatch(e: Event): void {
    const sock = e.id ? this.find(e.id) : undefined;
    switch (e.ev) {
      case "connected":
        if (sock) sock.state = "open";
        this.settle(e.id, e.id);
        return;
      case "udp_bound":
        if (sock) {
          sock.state = "open";
          sock.port = e.port;
        }
        this.settle(e.id, { id: e.id, port: e.port });
        return;
      case "listening":
        if (sock) {
          sock.state = "open";
          sock.port = e.port;
        }
        this.settle(e.id, { id: e.id, port: e.port });
        return;
      case "resolved":
        this.settle(e.id, e.addrs);
        return;
      case "data":
        if (sock) this.deliver(sock, e.data);
        return;
      case "data_from":
        if (!sock) return;
        if (sock.onDataFrom) safe(() => sock.onDataFrom!(e.data, e.addr, e.port));
        else if (sock.onData) safe(() => sock.onData!(e.data));
        else sock.inboxFrom.push([e.data, e.addr, e.port]);
        return;
      case "accepted": {
        const conn = this.newSock(e.connId, "tcp", "open");
        this.sockets.set(e.connId, conn);
        if (!sock) return;
        if (sock.onAccept) safe(() => sock.onAccept!(e.connId, e.remote));
        else sock.acceptQ.push([e.connId, e.remote]);
        return;
      }
      case "credit":
        if (sock && sock.state !== "closed") {
          sock.credit += e.bytes;
          this.pump(sock);
        }
        return;
      case "end":
        if (!sock || sock.ended) return;
        sock.ended = true;
        sock.sink?.end();
        if (sock.onEnd) {
          sock.endFired = true;
          safe(sock.onEnd);
        }
        return;
      case "closed":
        if (sock) this.finish(sock);
        this.fail(e.id, new WasmnetError("ECLOSED", `socket ${e.id} closed before it was ready`, e.id));
        return;
      case "error":
      case "denied": {
        const err =
          e.ev === "denied"
            ? new WasmnetError("EPOLICY", e.msg, e.id)
            : new WasmnetError(e.code as WasmnetErrorCode, e.msg, e.id);
        if (e.id === 0) {
          if (this.sessionErrorCb) safe(() => this.sessionErrorCb!(err));
          else console.warn(`wasmnet: session error ${err.code}: ${err.message}`);
          return;
        }
        if (this.fail(e.id, err)) {
          if (sock && sock.state === "opening") this.finish(sock, err, false);
          return;
        }
        // An id that has ended hears nothing more, except EBADID for requests that crossed its end
        // on the wire (e.g. data sent behind an open the server had already refused): ignored.
        if (!sock || sock.state === "closed") return;
        if (sock.onError) safe(() => sock.onError!(err));
        // A malformed request leaves the stream as it was; a UDP socket survives a failed datagram.
        // An open still in progress (openAndSend) ends with any answer but `connected`.
        const survives =
          sock.state !== "opening" && (err.code === "EBADREQ" || err.code === "EPOLICY" || (sock.kind === "udp" && err.code !== "EBADID"));
        if (!survives) this.finish(sock, err);
        else if (!sock.onError) console.warn(`wasmnet: socket ${e.id}: ${err.code}: ${err.message}`);
        return;
      }
    }
  }

  private settle(id: number, value: unknown): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    (p.resolve as (v: unknown) => void)(value);
  }

  private fail(id: number, err: WasmnetError): boolean {
    const p = this.pending.get(id);
    if (!p) return false;
    this.pending.delete(id);
    p.reject(err);
    return true;
  }

  private deliver(sock: Sock, data: Uint8Array): void {
    if (sock.sink) sock.sink.data(data);
    else if (sock.onData) safe(() => sock.onData!(data));
    else sock.inbox.push(data);
  }

  private flushInbox(sock: Sock): void {
    const q = sock.inbox;
    sock.inbox = [];
    const cb = sock.onData!;
    for (const d of q) safe(() => cb(d));
  }

  /** The socket is gone: fail its queued writes, tell the stream and the onClose callback. */
  private finish(sock: Sock, err?: WasmnetError, notify = true): void {
    if (sock.state === "closed") return;
    sock.state = "closed";
    sock.sendClosed = true;
    sock.closeError = err;
    const werr = err ?? new WasmnetError("ECLOSED", `socket ${sock.id} closed`, sock.id);
    for (const w of sock.queue.splice(0)) w.reject?.(werr);
    sock.queued = 0;
    this.sockets.delete(sock.id);
    this.graveyard.set(sock.id, sock);
    if (this.graveyard.size > GRAVEYARD_MAX) this.graveyard.delete(this.graveyard.keys().next().value!);
    if (!notify) return;
    sock.sink?.close(err);
    if (sock.onClose) this.fireClose(sock);
  }

  private fireClose(sock: Sock): void {
    sock.closeFired = true;
    const cb = sock.onClose!;
    safe(() => cb(sock.closeError));
  }

  // ---- internals: sending and flow control ----

  private enqueue(sock: Sock, bytes: Uint8Array, resolve?: () => void, reject?: (e: WasmnetError) => void): void {
    if (sock.queue.length === 0) {
      // Send what fits now, straight from the caller's buffer (the encoder copies it).
      let off = 0;
      while (off < bytes.length && sock.credit > 0) {
        const n = Math.min(sock.credit, this.chunk, bytes.length - off);
        this.transmit({ op: "send", id: sock.id, data: bytes.subarray(off, off + n) });
        off += n;
        sock.credit -= n;
      }
      if (off === bytes.length) {
        resolve?.();
        return;
      }
      bytes = bytes.slice(off); // the caller may reuse its buffer (e.g. WASM memory): keep a copy
    } else {
      bytes = bytes.slice();
    }
    sock.queue.push({ bytes, off: 0, resolve, reject });
    sock.queued += bytes.length;
  }

  private pump(sock: Sock): void {
    if (this.down || sock.unsent) return;
    while (sock.queue.length > 0 && sock.credit > 0) {
      const w = sock.queue[0]!;
      const n = Math.min(sock.credit, this.chunk, w.bytes.length - w.off);
      this.transmit({ op: "send", id: sock.id, data: w.bytes.subarray(w.off, w.off + n) });
      w.off += n;
      sock.credit -= n;
      sock.queued -= n;
      if (w.off === w.bytes.length) {
        sock.queue.shift();
        w.resolve?.();
      }
    }
    if (sock.queue.length > 0 || sock.state === "closed") return;
    if (sock.finAfterFlush) {
      sock.finAfterFlush = false;
      this.transmit({ op: "shutdown", id: sock.id });
    }
    if (sock.closeAfterFlush) {
      this.transmit({ op: "close", id: sock.id });
    }
  }

  /** Without flow control: wait until the WebSocket's own buffer is low again. */
  private wsDrained(): Promise<void> {
    if (this.down) return Promise.reject(this.down);
    if (this.ws.bufferedAmount <= this.v1HighWaterMark) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.drainWaiters.push({ resolve, reject });
      if (this.drainTimer === undefined) this.pollDrain();
    });
  }

  private pollDrain(): void {
    this.drainTimer = setTimeout(() => {
      this.drainTimer = undefined;
      if (this.down) return;
      if (this.ws.bufferedAmount <= this.v1HighWaterMark) {
        for (const w of this.drainWaiters.splice(0)) w.resolve();
      } else if (this.drainWaiters.length > 0) this.pollDrain();
    }, 5);
  }

  // ---- internals: ids and sockets ----

  private check(): void {
    if (this.down) throw new WasmnetError("ECLOSED", `not connected: ${this.down.message}`);
  }

  private allocId(): number {
    while (this.sockets.has(this.nextId) || this.graveyard.has(this.nextId) || this.pending.has(this.nextId)) this.nextId++;
    return this.nextId++;
  }

  private newSock(id: number, kind: Kind, state: Sock["state"]): Sock {
    return {
      id,
      kind,
      state,
      sendClosed: false,
      closeAfterFlush: false,
      finAfterFlush: false,
      credit: this.initialCredit(kind),
      queue: [],
      queued: 0,
      inbox: [],
      inboxFrom: [],
      acceptQ: [],
      ended: false,
      closeError: undefined,
      closeFired: false,
      endFired: false,
    };
  }

  /** What a new socket may send before its first credit: the window for a stream under flow control. */
  private initialCredit(kind: Kind): number {
    return this.flow && (kind === "tcp" || kind === "tls") ? this._window : Infinity;
  }

  private find(id: number): Sock | undefined {
    return this.sockets.get(id) ?? this.graveyard.get(id);
  }

  /** A socket that can still send, or a thrown WasmnetError saying why not. */
  private live(id: number, what: string): Sock {
    if (this.down) throw new WasmnetError("ECLOSED", `${what}: not connected: ${this.down.message}`, id);
    const sock = this.find(id);
    if (!sock) throw new WasmnetError("EBADID", `${what}: unknown id ${id}`, id);
    if (sock.state === "closed" || sock.sendClosed) throw new WasmnetError("ECLOSED", `${what}: socket ${id} is closed for sending`, id);
    return sock;
  }
}

