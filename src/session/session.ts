// One client session (one WebSocket, whatever protocol it speaks): the id table, the limits, and
// the dispatch of requests to the socket layer. It receives decoded requests (the one request
// model, src/protocol/messages.ts) and answers with events through a Transport; codecs and
// protocols are the adapters' business (src/adapters/). Every destination goes through the
// gate (src/net/gate.ts); backpressure and bandwidth live in ./backpressure.ts.
import { MAX_LOOKUPS_IN_FLIGHT, MAX_RESOLVED_NAMES } from "../constants.ts";
import { EMPTY_LEASE, type Lease } from "../limits/counters.ts";
import { TokenBucket } from "../limits/token-bucket.ts";
import { pass, type Cleared, type GatePolicy, type LookupBudget, type Refusal, type Verdict } from "../net/gate.ts";
import { TcpListener, type ListenerOwner } from "../net/listener.ts";
import { PAUSE, TcpStream, type StreamOutcome, type StreamOwner } from "../net/tcp-stream.ts";
import { tlsClientOptions } from "../net/tls-options.ts";
import { UdpRelay, type UdpOwner } from "../net/udp-relay.ts";
import { canonicalIp, formatHostPort, normalizeName } from "../policy/address.ts";
import { withTokenAllow, type Decision } from "../policy/decide.ts";
import { policyFor, type PolicyConfig } from "../policy/load.ts";
import { portAllowed } from "../policy/ports.ts";
import { FEATURES, PROTOCOL_VERSION, type ErrorCode } from "../protocol/constants.ts";
import type { Decoded, HelloLimits, Request } from "../protocol/messages.ts";
import { writeAudit } from "./audit.ts";
import { Backpressure } from "./backpressure.ts";
import type { SessionContext } from "./context.ts";
import { anonymous, type Identity } from "./identity.ts";
import { IdentityLimits } from "./identity-limits.ts";
import { IdTable } from "./ids.ts";
import type { Transport } from "./transport.ts";

type Resource = TcpStream | UdpRelay | TcpListener;

/** How an adapter opens a session: who the client is, and the protocol features it runs with. */
export interface SessionOptions {
  /** The client's address (after trusted proxies), for per-IP limits and logs. */
  remote: string;
  /** Who it is (from its token); anonymous, keyed by `remote`, when absent. */
  identity?: Identity;
  /** The session's own unit of max_sessions / per-IP / per-identity, given back when it ends. */
  lease?: Lease;
  /** Version-2 credit flow control from the start (adapters that manage a window themselves). */
  flow?: boolean;
  /** Half-close (`shutdown`/`end`) from the start. */
  halfClose?: boolean;
  /** Which protocol the client speaks (its adapter), for /metrics and the logs. */
  protocol?: SessionProtocol;
}

export type SessionProtocol = "wasmnet" | "wisp" | "wsproxy" | "posix";

let sessionCounter = 0;

export class Session implements StreamOwner, UdpOwner, ListenerOwner {
  readonly sid = (++sessionCounter).toString(36) + "-" + Math.random().toString(36).slice(2, 8);
  readonly remote: string;
  readonly protocol: SessionProtocol;
  private _identity: Identity;
  /** The byte window per stream (its profile's stream_buffer_bytes): the client is told it in `hello`. */
  private _window: number;
  private _version = 1;
  private _flow: boolean;
  private _halfClose: boolean;
  private started = false;
  private _closed = false;
  private readonly ids = new IdTable<Resource>();
  /**
   * Addresses this session got from `resolve`, and the name they came from: a WASM program
   * that calls getaddrinfo() and then connects to the IP is judged by that name's rules too.
   * Bounded: cleared when full.
   */
  private readonly resolvedNames = new Map<string, string>();
  /** Name look-ups in flight for resolve and send_to (connects are bounded by max_connections). */
  private readonly lookups: LookupBudget = lookupBudget(MAX_LOOKUPS_IN_FLIGHT);
  private readonly flowControl: Backpressure;
  private readonly lease: Lease;
  private identityLimits: IdentityLimits;
  /** bindIdentity: the new identity's unit of max_sessions_per_identity, and how far it got. */
  private identityLease: Lease = EMPTY_LEASE;
  private binding: "no" | "asking" | "bound" = "no";
  /** The session's bucket, then the identity's shared one: Backpressure holds this array. */
  private readonly buckets: TokenBucket[];
  /** The policy (and the gate over it) as of a policy generation; rebuilt after a reload. */
  private view: { generation: number; policy: PolicyConfig; gate: GatePolicy } | null = null;
  private creditOwed = new Map<TcpStream, number>();
  private creditFlush: ReturnType<typeof setImmediate> | undefined;
  private readonly sweep: ReturnType<typeof setInterval>;

  constructor(
    readonly ctx: SessionContext,
    private readonly transport: Transport,
    options: SessionOptions,
  ) {
    this.remote = options.remote;
    this.protocol = options.protocol ?? "wasmnet";
    this._identity = options.identity ?? anonymous(options.remote);
    this.lease = options.lease ?? EMPTY_LEASE;
    this._flow = options.flow ?? false;
    this._halfClose = options.halfClose ?? false;
    if (this._flow || this._halfClose) this._version = 2;
    const p = this.policy;
    this._window = p.limits.streamBufferBytes;
    this.identityLimits = new IdentityLimits(ctx, this.identity, () => this.policy);
    this.buckets = [];
    this.setBuckets(p);
    this.flowControl = new Backpressure(transport, this.buckets, { high: ctx.highWatermark, low: ctx.lowWatermark }, ctx.memory, () => this.openStreams());
    // One sweep a second at most: idle streams, and the daily quota coming back after midnight.
    const idleSecs = p.limits.idleTimeoutSecs;
    const every = idleSecs > 0 ? Math.min(1000, Math.max(100, idleSecs * 250)) : 1000;
    this.sweep = setInterval(() => this.sweepIdle(), every);
    this.sweep.unref?.();
    ctx.metrics.sessionOpened(this.identity.profile, this.protocol);
    ctx.log.debug("session open", { session: this.sid, protocol: this.protocol, remote: this.remote, identity: this.identity.name, profile: this.identity.profile });
  }

  /**
   * The policy this session runs under: its profile of the running policy (a reload applies to
   * every open from then on). A profile a reload removed allows nothing: falling back to the
   * top level could widen what the token was given.
   */
  get policy(): PolicyConfig {
    return this.current().policy;
  }

  private get gate(): GatePolicy {
    return this.current().gate;
  }

  private current(): { generation: number; policy: PolicyConfig; gate: GatePolicy } {
    const held = this.ctx.policies;
    if (this.view?.generation === held.generation) return this.view;
    let policy = policyFor(held.current, this.identity.profile);
    if (policy === null) {
      this.ctx.log.warn("profile no longer in the policy: nothing is allowed for its sessions", { session: this.sid, profile: this.identity.profile });
      policy = { ...held.current, rules: { deny: [], allow: [] }, bindAddrs: [], bindPorts: [] };
    }
    const gate: GatePolicy = {
      rules: withTokenAllow(policy.rules, this.identity.allow),
      bind: policy,
      resolver: this.ctx.resolver,
      dnsTimeoutMs: this.ctx.dnsTimeoutMs,
      nameOf: (ip) => this.resolvedNames.get(ip),
    };
    return (this.view = { generation: held.generation, policy, gate });
  }

  /** The session's bucket and the identity's shared one, in the array Backpressure reads. */
  private setBuckets(p: PolicyConfig): void {
    const shared = this.identityLimits.bucket;
    this.buckets.splice(0, this.buckets.length, TokenBucket.forMbps(p.maxBandwidthMbps), ...(shared ? [shared] : []));
  }

  /** Who the session belongs to: from admission, or from a login (bindIdentity). */
  get identity(): Identity {
    return this._identity;
  }

  /**
   * Put the session under another identity, for a protocol that logs in after the upgrade
   * (Wisp's own authentication). Only before the session's first request, and once. Takes the
   * new identity's unit of max_sessions_per_identity (of its profile) through the counters, then
   * switches the profile (policy, window, session bucket) and the identity's limits over. What
   * admission counted stays held until the session ends (max_sessions, the IP's unit, the
   * admission identity's unit): a login never frees room for more anonymous sessions from the
   * same address. Resolves to null once bound, else why it was refused.
   */
  async bindIdentity(identity: Identity): Promise<string | null> {
    if (this.started || this.binding !== "no") throw new Error("bindIdentity: only once, before the session's first request");
    const policy = policyFor(this.ctx.policies.current, identity.profile);
    if (policy === null) return `profile "${identity.profile}" is not in the policy`;
    const max = policy.limits.maxSessionsPerIdentity;
    this.binding = "asking";
    const got = await this.ctx.counters.acquire([{ key: `id:${identity.key}:sessions`, max }]);
    this.binding = got.ok ? "bound" : "no";
    if (!got.ok) return got.reason === "limit" ? `max_sessions_per_identity (${max}) reached for ${identity.name ?? identity.key}` : "cluster limits are unavailable; try again later";
    if (this._closed || this.started) {
      got.lease.release();
      return "the session went on meanwhile";
    }
    const from = this._identity.profile;
    this._identity = identity;
    this.identityLease = got.lease;
    this.view = null;
    const p = this.policy;
    this._window = p.limits.streamBufferBytes;
    // Nothing has moved yet, so fresh limits and buckets lose nothing.
    this.identityLimits.releaseAll();
    this.identityLimits = new IdentityLimits(this.ctx, identity, () => this.policy);
    this.setBuckets(p);
    this.ctx.metrics.sessionProfileChanged(from, identity.profile);
    this.ctx.log.info("session identity bound", { session: this.sid, remote: this.remote, identity: identity.name, profile: identity.profile });
    return null;
  }

  // ---- what adapters read ----

  /** The byte window per stream (its profile's stream_buffer_bytes). */
  get window(): number {
    return this._window;
  }

  get version(): number {
    return this._version;
  }
  get flow(): boolean {
    return this._flow;
  }
  get halfClose(): boolean {
    return this._halfClose;
  }
  get closed(): boolean {
    return this._closed;
  }
  /** Version 1: the most a stream queues toward a slow target. */
  get streamBufferBytes(): number {
    return this.policy.limits.streamBufferBytes;
  }
  get maxMessageBytes(): number {
    return this.ctx.policies.current.limits.maxMessageBytes;
  }
  get limits(): HelloLimits {
    const p = this.policy;
    return {
      max_connections: p.maxConnections,
      max_message_bytes: p.limits.maxMessageBytes,
      stream_buffer_bytes: p.limits.streamBufferBytes,
      max_bandwidth_mbps: p.maxBandwidthMbps,
    };
  }

  // ---- requests ----

  handle(d: Decoded): void {
    if (this._closed) return;
    const first = !this.started;
    this.started = true;
    if (!d.ok) {
      // An oversized send leaves a hole in that stream's bytes: the stream cannot go on.
      const r = this.ids.get(d.id);
      if (d.code === "ELIMIT" && r instanceof TcpStream) return r.fail(d.code, d.msg);
      return this.error(d.id, d.code, d.msg);
    }
    const req = d.req;
    switch (req.op) {
      case "hello":
        return first ? this.hello(req) : this.error(0, "EBADREQ", "hello is only valid as a session's first message");
      case "connect":
        return this.openStream(req, "tcp");
      case "connect_tls":
        return this.openStream(req, "tls");
      case "connect_udp":
        return this.openUdp(req);
      case "bind":
        return this.bind(req);
      case "listen":
        return this.listen(req.id); // Bun's listener has no backlog setting: the client's is accepted and ignored
      case "send":
        return this.send(req.id, req.data);
      case "send_to":
        return this.sendTo(req);
      case "close":
        return this.close(req.id);
      case "shutdown":
        return this.shutdown(req.id);
      case "resolve":
        return this.resolve(req.id, req.name);
    }
  }

  private hello(req: Extract<Request, { op: "hello" }>): void {
    this._version = Math.min(req.version, PROTOCOL_VERSION);
    if (this._version >= 2) {
      this._flow = req.features.includes("flow");
      this._halfClose = req.features.includes("half_close");
    }
    this.transport.send({
      ev: "hello",
      id: 0,
      version: this._version,
      features: this._version >= 2 ? FEATURES.filter((f) => req.features.includes(f)) : [],
      window: this.window,
      limits: this.limits,
      identity: this.identity.name,
      profile: this.identity.profile,
    });
  }

  /** Checks shared by every request that creates something under a new id. */
  private claim(id: number): boolean {
    if (this.ids.inUse(id)) {
      this.error(id, "EIDINUSE", `id ${id} is already in use in this session`);
      return false;
    }
    const refusal = this.roomProblem();
    if (refusal) {
      this.error(id, "ELIMIT", refusal);
      return false;
    }
    return true;
  }

  /** Why nothing new may open now (a limit), or null. */
  private roomProblem(): string | null {
    const max = this.policy.maxConnections;
    if (max > 0 && this.ids.size >= max) return `max_connections (${max}) reached for this session`;
    if (this.identityLimits.quotaSpent()) return this.identityLimits.quotaMessage();
    if (this.ctx.memory.overloaded()) return "the server is over its memory budget (max_memory_mb); try again later";
    return null;
  }

  /**
   * One unit of max_connections_per_identity for what is opening under `id` (`r`, or a
   * reservation when null), then `then(lease)`; or `refused(why)`. A unit that arrives after the
   * open was abandoned goes straight back.
   */
  private withConnectionLease(r: Resource | null, id: number, then: (lease: Lease) => void, refused: (msg: string) => void): void {
    this.identityLimits.acquireConnection((lease) => {
      if (this._closed || (r !== null && this.ids.get(id) !== r) || (r === null && !this.ids.inUse(id))) return lease.release();
      then(lease);
    }, refused);
  }

  /** Run the gate; `then` gets the verdict at once for literals, after the look-up for names. */
  private judge<T>(v: Verdict<T> | Promise<Verdict<T>>, then: (v: Verdict<T>) => void): void {
    if (v instanceof Promise) v.then(then);
    else then(v);
  }

  // ---- TCP / TLS ----

  private openStream(req: { id: number; addr: string; port: number }, kind: "tcp" | "tls"): void {
    if (!this.claim(req.id)) return;
    // The requested name is known before any look-up: a stream that fails to resolve is audited with it.
    const name = canonicalIp(req.addr) === null ? normalizeName(req.addr) : null;
    const stream = new TcpStream(this, req.id, kind, { name, addr: req.addr, port: req.port, rule: "" });
    this.ids.set(req.id, stream);
    this.ctx.metrics.sockets[kind]++;
    const op = kind === "tls" ? "connect_tls" : "connect";
    stream.armConnectTimeout(this.policy.connectionTimeoutSecs * 1000, op);
    this.withConnectionLease(
      stream,
      req.id,
      (lease) => {
        this.identityLimits.hold(stream, lease);
        this.judge(pass(this.gate, { op, host: req.addr, port: req.port }), (v) => {
          if (stream.state !== "connecting") return; // closed or timed out meanwhile
          if (!v.ok) {
            if (v.refused) return stream.refuse(v.refused);
            return stream.fail(v.code, `${op} ${formatHostPort(req.addr, req.port)}: ${v.msg}`);
          }
          this.dial(stream, v.value, kind === "tls");
        });
      },
      (msg) => stream.fail("ELIMIT", msg),
    );
  }

  private dial(stream: TcpStream, to: Cleared, useTls: boolean): void {
    const pool = this.ctx.pool; // plain TCP only; asked with the address the gate just cleared
    if (!useTls && pool) {
      if (pool.take(stream, to, this._halfClose)) return;
      pool.noteUse(to);
    }
    stream.dial(to, useTls ? tlsClientOptions(to.name, this.ctx.extraCa) : null, this._halfClose);
  }

  private send(id: number, data: Uint8Array): void {
    const r = this.ids.get(id);
    if (r instanceof UdpRelay) return this.sendDatagram(r, data, r.peer);
    if (!(r instanceof TcpStream)) return this.error(id, r ? "EBADREQ" : "EBADID", r ? `send: id ${id} is a listener` : `send: unknown id ${id}`);
    if (r.localFin) return this.error(id, "EBADREQ", `send: stream ${id} was shut down for writing`);
    this.ctx.metrics.bytesUp += data.length;
    const held = this.flowControl.upload(data.length);
    const problem = r.write(data, held);
    if (problem) return r.fail("ELIMIT", `${r.where}: ${problem}`);
    this.spend(data.length);
  }

  private shutdown(id: number): void {
    const r = this.ids.get(id);
    if (!(r instanceof TcpStream)) return this.error(id, r ? "EBADREQ" : "EBADID", r ? `shutdown: id ${id} is not a stream` : `shutdown: unknown id ${id}`);
    if (!this._halfClose) return this.error(id, "EBADREQ", "shutdown needs the half_close feature (send hello first)");
    r.shutdown();
  }

  // ---- UDP ----

  private openUdp(req: { id: number; addr: string; port: number }): void {
    if (!this.claim(req.id)) return;
    this.ids.reserve(req.id);
    const where = formatHostPort(req.addr, req.port);
    const abandoned = () => !this.ids.unreserve(req.id) || this._closed;
    this.withConnectionLease(
      null,
      req.id,
      (lease) =>
        this.judge(pass(this.gate, { op: "connect_udp", host: req.addr, port: req.port }), (v) => {
          if (abandoned()) return lease.release(); // closed meanwhile
          if (!v.ok) {
            lease.release();
            if (v.refused) return this.deny(req.id, v.refused, where);
            return this.error(req.id, v.code, `connect_udp ${where}: ${v.msg}`);
          }
          this.ids.reserve(req.id);
          UdpRelay.open(this, req.id, v.value).then(
            (relay) => {
              this.ctx.metrics.sockets.udp++;
              this.identityLimits.hold(relay, lease);
              // The client may have closed the id (or the session) while the socket was being bound.
              if (abandoned()) return relay.close(this._closed ? "session closed" : "closed by client");
              this.ids.set(req.id, relay);
              this.transport.send({ ev: "udp_bound", id: req.id, port: relay.localPort });
            },
            (e) => {
              lease.release();
              if (!abandoned()) this.error(req.id, "EINTERNAL", `connect_udp ${where}: ${(e as Error).message}`);
            },
          );
        }),
      (msg) => {
        if (!abandoned()) this.error(req.id, "ELIMIT", `connect_udp ${where}: ${msg}`);
      },
    );
  }

  private sendTo(req: { id: number; addr: string; port: number; data: Uint8Array }): void {
    const r = this.ids.get(req.id);
    if (!(r instanceof UdpRelay)) return this.error(req.id, r ? "EBADREQ" : "EBADID", r ? `send_to: id ${req.id} is not a UDP socket` : `send_to: unknown id ${req.id}`);
    // Every datagram's destination passes the gate; a name costs a look-up, bounded per session.
    this.judge(pass(this.gate, { op: "send_to", host: req.addr, port: req.port }, this.lookups), (v) => {
      if (r.closed) return;
      if (v.ok) return this.sendDatagram(r, req.data, v.value);
      const where = formatHostPort(req.addr, req.port); // only a refusal or an error names it
      if (v.refused) return this.deny(r.id, v.refused, where);
      if (v.code === "ELIMIT") this.ctx.metrics.udpDropped("lookups");
      this.error(r.id, v.code, `send_to ${where}: ${v.msg}`);
    });
  }

  private sendDatagram(r: UdpRelay, data: Uint8Array, to: Cleared): void {
    // UDP cannot be slowed down: over the bandwidth limit a datagram is dropped and counted.
    const drop = this.flowControl.admitDatagram(data.length, false);
    if (drop) return this.ctx.metrics.udpDropped(drop);
    const problem = r.send(data, to);
    if (problem) return this.error(r.id, problem.code, `udp ${problem.msg}`);
    this.ctx.metrics.bytesUp += data.length;
    this.spend(data.length);
  }

  datagram(relay: UdpRelay, data: Uint8Array, addr: string, port: number): void {
    // Toward a client above its high watermark, or over the budget: dropped, never queued.
    const drop = this.flowControl.admitDatagram(data.length, true);
    if (drop) return this.ctx.metrics.udpDropped(drop);
    this.ctx.metrics.bytesDown += data.length;
    this.transport.send({ ev: "data_from", id: relay.id, data, addr, port });
    this.spend(data.length);
  }

  udpClosed(relay: UdpRelay, reason: string): void {
    this.ctx.metrics.sockets.udp--;
    this.identityLimits.release(relay);
    const p = relay.peer;
    this.audit({ id: relay.id, kind: "udp", name: p.name, addr: p.addr, port: p.port, rule: p.rule, up: relay.up, down: relay.down, started: relay.started, reason });
  }

  debug(msg: string, fields: Record<string, unknown>): void {
    this.ctx.log.debug(msg, { session: this.sid, ...fields });
  }

  // ---- inbound ----

  private bind(req: { id: number; addr: string; port: number }): void {
    if (!this.claim(req.id)) return;
    const where = formatHostPort(req.addr, req.port);
    const v = pass(this.gate, { op: "bind", host: req.addr, port: req.port });
    if (!v.ok) return v.refused ? this.deny(req.id, v.refused, where) : this.error(req.id, v.code, `bind ${where}: ${v.msg}`);
    this.ids.reserve(req.id);
    this.withConnectionLease(
      null,
      req.id,
      (lease) => {
        if (!this.ids.unreserve(req.id) || this._closed) return lease.release();
        const listener = new TcpListener(this, req.id, v.value);
        let port: number;
        try {
          port = this.listenOnAllowedPort(listener, req.port);
        } catch (e) {
          lease.release();
          const code = (e as { code?: string }).code;
          const at = formatHostPort(v.value.addr, req.port);
          if (code === "EADDRINUSE") return this.error(req.id, "EADDRINUSE", `bind ${at}: address in use`);
          return this.error(req.id, "EINTERNAL", `bind ${at}: ${(e as Error).message}`);
        }
        this.identityLimits.hold(listener, lease);
        this.ids.set(req.id, listener);
        this.ctx.metrics.sockets.listener++;
        this.ctx.log.info("listening", { session: this.sid, id: req.id, addr: v.value.addr, port });
        this.transport.send({ ev: "listening", id: req.id, port });
      },
      (msg) => {
        if (this.ids.unreserve(req.id) && !this._closed) this.error(req.id, "ELIMIT", `bind ${where}: ${msg}`);
      },
    );
  }

  /** Port 0 means "any free port inside bind_ports". */
  private listenOnAllowedPort(listener: TcpListener, port: number): number {
    const ranges = this.policy.bindPorts;
    const anyPort = ranges.length === 1 && ranges[0]!.lo <= 1024 && ranges[0]!.hi === 65535;
    if (port !== 0 || anyPort) return listener.listen(port, this._halfClose);
    const size = ranges.reduce((n, r) => n + r.hi - r.lo + 1, 0);
    let last: unknown;
    for (let attempt = 0; attempt < 32; attempt++) {
      let k = Math.floor(Math.random() * size);
      const r = ranges.find((r) => (k < r.hi - r.lo + 1 ? true : ((k -= r.hi - r.lo + 1), false)))!;
      const candidate = r.lo + k;
      if (!portAllowed(ranges, candidate)) continue;
      try {
        return listener.listen(candidate, this._halfClose);
      } catch (e) {
        last = e;
        if ((e as { code?: string }).code !== "EADDRINUSE") throw e;
      }
    }
    throw last ?? Object.assign(new Error("no free port inside bind_ports"), { code: "EADDRINUSE" });
  }

  private listen(id: number): void {
    const r = this.ids.get(id);
    if (!(r instanceof TcpListener)) return this.error(id, r ? "EBADREQ" : "EBADID", r ? `listen: id ${id} is not a listener` : `listen: unknown id ${id}`);
    this.transport.send({ ev: "listening", id, port: r.port });
  }

  accept(listener: TcpListener, remoteAddr: string, remotePort: number): TcpStream | null {
    const refusal = this._closed ? "session closed" : this.roomProblem();
    if (refusal) {
      this.ctx.log.info("inbound refused", { session: this.sid, id: listener.id, reason: refusal });
      return null;
    }
    const addr = canonicalIp(remoteAddr) ?? remoteAddr;
    const id = this.ids.allocateServerId();
    const stream = new TcpStream(this, id, "inbound", { name: null, addr, port: remotePort, rule: `bind ${listener.id}` });
    this.ctx.metrics.sockets.inbound++;
    if (!this.identityLimits.countsConnections) {
      this.ids.set(id, stream);
      this.announce(listener, stream);
      return stream;
    }
    // max_connections_per_identity may take a Redis round trip, and Bun wants the socket's fate
    // now: take it, but keep it unread and unannounced (its id reserved) until the unit comes;
    // reset it if the unit is refused or the id was given up meanwhile.
    this.ids.reserve(id);
    stream.hold(PAUSE.admission);
    this.identityLimits.acquireConnection(
      (lease) => {
        if (!this.ids.unreserve(id) || this._closed || !stream.isOpen) {
          lease.release();
          return stream.finish("session closed before the connection was admitted");
        }
        this.identityLimits.hold(stream, lease);
        this.ids.set(id, stream);
        this.announce(listener, stream);
        stream.release(PAUSE.admission);
      },
      (why) => {
        this.ids.unreserve(id);
        this.ctx.log.info("inbound refused", { session: this.sid, id: listener.id, reason: why });
        stream.finish(`inbound refused: ${why}`);
      },
    );
    return stream;
  }

  private announce(listener: TcpListener, stream: TcpStream): void {
    const t = stream.target;
    this.transport.send({ ev: "accepted", id: listener.id, connId: stream.id, remote: formatHostPort(t.addr, t.port) });
    this.flowControl.opened(stream);
  }

  // ---- resolve ----

  private resolve(id: number, host: string): void {
    if (this.ids.inUse(id)) return this.error(id, "EIDINUSE", `id ${id} is already in use in this session`);
    const v = pass(this.gate, { op: "resolve", host }, this.lookups);
    if (!(v instanceof Promise)) return this.resolved(id, host, v);
    this.ids.reserve(id); // until the answer comes, or the client closes the id
    v.then((v) => {
      if (this.ids.unreserve(id) && !this._closed) this.resolved(id, host, v);
    });
  }

  private resolved(id: number, host: string, v: Verdict<{ name: string | null; addrs: string[] }>): void {
    if (!v.ok) return v.refused ? this.deny(id, v.refused, host) : this.error(id, v.code, `resolve ${host}: ${v.msg}`);
    const { name, addrs } = v.value;
    if (name !== null) {
      if (this.resolvedNames.size + addrs.length > MAX_RESOLVED_NAMES) this.resolvedNames.clear();
      for (const a of addrs) this.resolvedNames.set(a, name);
    }
    this.transport.send({ ev: "resolved", id, addrs });
  }

  // ---- close ----

  private close(id: number): void {
    // A UDP socket still being bound, or a look-up in flight: abandon it; its result is dropped.
    if (this.ids.unreserve(id)) return this.transport.send({ ev: "closed", id });
    const r = this.ids.get(id);
    if (!r) return this.error(id, "EBADID", `close: unknown id ${id}`);
    this.ids.delete(id);
    this.transport.send({ ev: "closed", id });
    if (r instanceof TcpStream) r.closeByClient(); // flushes what the target has not taken yet
    else this.closeResource(r, "closed by client");
  }

  private closeResource(r: Resource, reason: string): void {
    if (r instanceof TcpStream) return r.finish(reason);
    if (r instanceof UdpRelay) return r.close(reason);
    r.close();
    this.identityLimits.release(r);
    this.ctx.metrics.sockets.listener--;
  }

  // ---- stream callbacks (StreamOwner) ----

  opened(stream: TcpStream): void {
    this.transport.send({ ev: "connected", id: stream.id });
    this.flowControl.opened(stream);
  }

  received(stream: TcpStream, data: Uint8Array): void {
    this.ctx.metrics.bytesDown += data.length;
    this.transport.send({ ev: "data", id: stream.id, data });
    this.flowControl.delivered(stream, data.length);
    this.spend(data.length);
  }

  /** Credit is batched per loop turn: a burst of sends that the target took earns one event. */
  credit(stream: TcpStream, bytes: number): void {
    this.creditOwed.set(stream, (this.creditOwed.get(stream) ?? 0) + bytes);
    this.creditFlush ??= setImmediate(() => this.flushCredit());
  }

  private flushCredit(): void {
    this.creditFlush = undefined;
    // Swap first: sending credit can make an adapter write more, which earns new credit.
    const owed = this.creditOwed;
    this.creditOwed = new Map();
    if (this._closed) return;
    for (const [s, n] of owed) if (s.isOpen) this.transport.send({ ev: "credit", id: s.id, bytes: n });
  }

  remoteEnded(stream: TcpStream): void {
    if (this._halfClose) this.transport.send({ ev: "end", id: stream.id });
  }

  ended(stream: TcpStream, outcome: StreamOutcome): void {
    this.ctx.metrics.sockets[stream.kind]--;
    this.identityLimits.release(stream);
    // Still registered: the client has not heard of the end yet (client closes unregister first).
    const tell = this.ids.delete(stream.id, stream) && !this._closed;
    // A denied stream never opened: its `denied` log line is its record, no audit line.
    if (outcome.kind === "denied") return tell ? this.deny(stream.id, outcome.refusal, stream.where) : undefined;
    if (tell && outcome.kind === "error") this.error(stream.id, outcome.code, outcome.msg);
    else if (tell) this.transport.send({ ev: "closed", id: stream.id });
    const t = stream.target;
    this.audit({ id: stream.id, kind: stream.kind, name: t.name, addr: t.addr, port: t.port, rule: t.rule, up: stream.up, down: stream.down, started: stream.started, reason: outcome.reason });
  }

  private audit(r: Parameters<typeof writeAudit>[2]): void {
    writeAudit(this.ctx.log, { session: this.sid, protocol: this.protocol, identity: this.identity.name, profile: this.identity.profile }, r);
  }

  // ---- what adapters call ----

  /** The client's transport drained some of what it had queued. */
  drained(): void {
    this.flowControl.drained();
  }

  /**
   * An adapter that keeps a stream's received bytes itself until its client asks for them (the
   * POSIX adapter's per-socket receive buffer) stops reading the target while that buffer is
   * full (`on`), and reads again once there is room. Other ids are ignored: the stream may have
   * ended meanwhile.
   */
  holdReading(id: number, on: boolean): void {
    const r = this.ids.get(id);
    if (!(r instanceof TcpStream)) return;
    if (on) r.hold(PAUSE.consumer);
    else r.release(PAUSE.consumer);
  }

  /**
   * An adapter that reports an error in its own protocol (Wisp CLOSE, wsproxy close code) has it
   * counted and logged here, like the session's own errors.
   */
  noteError(id: number, code: ErrorCode, msg: string): void {
    this.ctx.metrics.error(code);
    if (code === "EINTERNAL" || code === "EBADREQ") this.ctx.log.debug("request error", { session: this.sid, id, code, msg });
  }

  /** The client is gone: close everything at once. */
  destroy(): void {
    if (this._closed) return;
    this._closed = true;
    clearInterval(this.sweep);
    this.flowControl.close();
    this.ctx.metrics.sessionClosed(this.identity.profile, this.protocol);
    for (const r of [...this.ids.values()]) this.closeResource(r, "session closed");
    this.ids.clear();
    this.identityLimits.releaseAll();
    this.identityLease.release();
    this.lease.release();
    this.ctx.log.debug("session closed", { session: this.sid });
  }

  // ---- helpers ----

  private *openStreams(): Iterable<TcpStream> {
    for (const r of this.ids.values()) if (r instanceof TcpStream && r.isOpen) yield r;
  }

  /**
   * idle_timeout_secs: an open stream or UDP socket that moved no bytes either way for that
   * long is closed with ETIMEDOUT (what operators expect of a proxy; the WebSocket's own idle
   * timeout only catches vanished browsers).
   */
  private sweepIdle(): void {
    const secs = this.policy.limits.idleTimeoutSecs;
    if (secs === 0) return;
    const now = performance.now();
    for (const r of [...this.ids.values()]) {
      if (r instanceof TcpListener || (r instanceof TcpStream && !r.isOpen)) continue;
      if (r.idleMs(now) < secs * 1000) continue;
      const msg = `no bytes either way for ${secs} s (idle_timeout_secs)`;
      if (r instanceof TcpStream) r.fail("ETIMEDOUT", `${r.where}: ${msg}`, "idle timeout");
      else {
        this.ids.delete(r.id);
        this.error(r.id, "ETIMEDOUT", `udp ${formatHostPort(r.peer.addr, r.peer.port)}: ${msg}`);
        r.close("idle timeout");
      }
    }
  }

  /** Count bytes toward the identity's day; the moment its quota is spent, end what moves bytes. */
  private spend(bytes: number): void {
    if (!this.identityLimits.spend(bytes)) return;
    const msg = this.identityLimits.quotaMessage();
    this.ctx.log.info("daily quota spent", { session: this.sid, identity: this.identityLimits.who });
    for (const r of [...this.ids.values()]) {
      if (r instanceof TcpStream) r.fail("ELIMIT", msg, "daily quota");
      else if (r instanceof UdpRelay) {
        this.ids.delete(r.id);
        this.error(r.id, "ELIMIT", msg);
        r.close("daily quota");
      }
    }
  }

  /** A policy refusal: `denied` (never `error`), counted and logged with the rule. */
  private deny(id: number, d: Refusal | Decision, target: string): void {
    this.ctx.metrics.denied(d.rule, this.identity.profile);
    this.ctx.log.info("denied", { session: this.sid, identity: this.identity.name, profile: this.identity.profile, id, target, code: d.code, rule: d.rule, reason: d.reason });
    this.transport.send({ ev: "denied", id, msg: d.reason });
  }


  private error(id: number, code: ErrorCode, msg: string): void {
    this.noteError(id, code, msg);
    if (!this._closed) this.transport.send({ ev: "error", id, code, msg });
  }
}

function lookupBudget(max: number): LookupBudget {
  let inFlight = 0;
  return {
    max,
    tryTake: () => inFlight < max && ++inFlight > 0,
    give: () => void inFlight--,
  };
}
