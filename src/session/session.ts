// One browser session (one WebSocket, or one Wisp connection): the id table, the limits, and
// the dispatch of requests to the socket layer. Transport-agnostic: it receives decoded
// requests and emits events through a Transport; the codec is the transport's business.
import tls from "node:tls";
import { MAX_LOOKUPS_IN_FLIGHT, MAX_RESOLVED_NAMES, SERVER_ID_BASE } from "../constants.ts";
import { TokenBucket } from "../limits/token-bucket.ts";
import { pickDestination, type Destination } from "../net/destination.ts";
import { TcpListener, type ListenerOwner } from "../net/listener.ts";
import { resolveTarget, ResolveError } from "../net/resolve.ts";
import { PAUSE_BACKPRESSURE, PAUSE_BANDWIDTH, TcpStream, tcpHandlers, tlsHandlers } from "../net/tcp-stream.ts";
import { UdpRelay, type UdpOwner } from "../net/udp-relay.ts";
import { canonicalIp, formatHostPort, normalizeName } from "../policy/address.ts";
import { decideBind } from "../policy/bind.ts";
import { decideAddress, decideName, filterResolved, type Decision } from "../policy/decide.ts";
import { portAllowed } from "../policy/ports.ts";
import { FEATURES, MAX_ID, PROTOCOL_VERSION, type ErrorCode } from "../protocol/constants.ts";
import type { Decoded, Event, Request } from "../protocol/messages.ts";
import type { SessionContext } from "./context.ts";

/** How a session talks back; the WebSocket glue (or a Wisp adapter) implements it. */
export interface Transport {
  /** Queue one event toward the client. */
  send(ev: Event): void;
  /** Bytes queued toward the client and not yet written to the network. */
  buffered(): number;
  /** Stop / restart reading client messages (upload bandwidth limit). */
  pauseInput(): void;
  resumeInput(): void;
}

type Resource = TcpStream | UdpRelay | TcpListener;

let sessionCounter = 0;
/** idle_timeout_secs bookkeeping: bytes moved and when that count last changed. */
const idleMarks = new WeakMap<TcpStream | UdpRelay, { bytes: number; at: number }>();
let caBundle: { extra: string[]; ca: string[] } | null = null;

export class Session implements ListenerOwner, UdpOwner {
  readonly sid = (++sessionCounter).toString(36) + "-" + Math.random().toString(36).slice(2, 8);
  version = 1;
  flow = false;
  halfClose = false;
  private started = false;
  closed = false;
  private readonly resources = new Map<number, Resource>();
  /** Ids whose open (DNS, policy, bind) is still in progress: they count as in use. */
  private readonly pending = new Set<number>();
  /**
   * Addresses this session got from `resolve`, and the name they came from: a WASM program
   * that calls getaddrinfo() and then connects to the IP is judged by that name's rules too.
   * Bounded: cleared when full.
   */
  private readonly resolvedNames = new Map<string, string>();
  private readonly nameOf = (ip: string): string | undefined => this.resolvedNames.get(ip);
  /** DNS look-ups in flight for resolve and send_to (connects are bounded by max_connections). */
  private lookups = 0;
  /** The WebSocket toward the browser is above the high watermark: targets are held. */
  private wsFull = false;
  /** Streams paused because the WebSocket toward the browser is full. */
  private readonly backpressured = new Set<TcpStream>();
  private readonly bucket: TokenBucket;
  private inputPausedUntil = 0;
  private drainCheck: ReturnType<typeof setTimeout> | undefined;
  private creditOwed = new Map<TcpStream, number>();
  private creditFlush: ReturnType<typeof setImmediate> | undefined;
  private nextServerId = SERVER_ID_BASE;
  private idleSweep: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly ctx: SessionContext,
    readonly transport: Transport,
    readonly remote: string,
  ) {
    this.bucket = TokenBucket.forMbps(ctx.policy.maxBandwidthMbps);
    const idleSecs = ctx.policy.limits.idleTimeoutSecs;
    if (idleSecs > 0) {
      this.idleSweep = setInterval(() => this.sweepIdle(idleSecs), Math.min(1000, Math.max(100, idleSecs * 250)));
      this.idleSweep.unref?.();
    }
    ctx.metrics.sessions++;
    ctx.metrics.sessionsTotal++;
    ctx.log.debug("session open", { session: this.sid, remote });
  }

  get window(): number {
    return this.ctx.policy.limits.streamBufferBytes;
  }
  get streamBufferBytes(): number {
    return this.ctx.policy.limits.streamBufferBytes;
  }

  // ---- requests ----

  handle(d: Decoded): void {
    if (this.closed) return;
    const first = !this.started;
    this.started = true;
    if (!d.ok) {
      // An oversized send leaves a hole in that stream's bytes: the stream cannot go on.
      const r = this.resources.get(d.id);
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
        return void this.openUdp(req);
      case "bind":
        return this.bind(req);
      case "listen":
        return this.listen(req.id, req.backlog);
      case "send":
        return this.send(req.id, req.data);
      case "send_to":
        return void this.sendTo(req);
      case "close":
        return this.close(req.id);
      case "shutdown":
        return this.shutdown(req.id);
      case "resolve":
        return void this.resolve(req.id, req.name);
    }
  }

  private hello(req: Extract<Request, { op: "hello" }>): void {
    this.version = Math.min(req.version, PROTOCOL_VERSION);
    if (this.version >= 2) {
      this.flow = req.features.includes("flow");
      this.halfClose = req.features.includes("half_close");
    }
    const p = this.ctx.policy;
    this.transport.send({
      ev: "hello",
      id: 0,
      version: this.version,
      features: this.version >= 2 ? FEATURES.filter((f) => req.features.includes(f)) : [],
      window: this.window,
      limits: {
        max_connections: p.maxConnections,
        max_message_bytes: p.limits.maxMessageBytes,
        stream_buffer_bytes: p.limits.streamBufferBytes,
        max_bandwidth_mbps: p.maxBandwidthMbps,
      },
    });
  }

  /** Checks shared by every request that creates something under a new id. */
  private claim(id: number): boolean {
    if (this.resources.has(id) || this.pending.has(id)) {
      this.error(id, "EIDINUSE", `id ${id} is already in use in this session`);
      return false;
    }
    if (!this.hasRoom()) {
      this.error(id, "ELIMIT", `max_connections (${this.ctx.policy.maxConnections}) reached for this session`);
      return false;
    }
    return true;
  }

  private hasRoom(): boolean {
    const max = this.ctx.policy.maxConnections;
    return max === 0 || this.resources.size + this.pending.size < max;
  }

  private destination(host: string, port: number): Promise<Destination> {
    const { policy, resolver, dnsTimeoutMs } = this.ctx;
    return pickDestination(policy.rules, resolver, dnsTimeoutMs, host, port, this.nameOf);
  }

  // ---- TCP / TLS ----

  private openStream(req: { id: number; addr: string; port: number }, kind: "tcp" | "tls"): void {
    if (!this.claim(req.id)) return;
    // The requested name is known before any look-up: a stream that fails to resolve is audited with it.
    const name = canonicalIp(req.addr) === null ? normalizeName(req.addr) : null;
    const stream = new TcpStream(this, req.id, kind, { name, addr: req.addr, port: req.port, rule: "" });
    this.resources.set(req.id, stream);
    this.ctx.metrics.sockets[kind]++;
    const secs = this.ctx.policy.connectionTimeoutSecs;
    stream.timer = setTimeout(() => stream.fail("ETIMEDOUT", `connect ${stream.where} timed out after ${secs} s`), secs * 1000);
    void this.dial(stream, req.addr, req.port, kind === "tls");
  }

  private async dial(stream: TcpStream, host: string, port: number, useTls: boolean): Promise<void> {
    const dest = await this.destination(host, port);
    if (stream.state !== "connecting") return; // closed or timed out meanwhile
    if (!dest.ok) {
      if (dest.denied) return this.deny(stream.id, dest.denied, formatHostPort(host, port), stream);
      return stream.fail(dest.code, `${useTls ? "connect_tls" : "connect"} ${formatHostPort(host, port)}: ${dest.msg}`);
    }
    stream.target = { name: dest.name, addr: dest.addr, port, rule: dest.rule };
    const pool = this.ctx.pool; // plain TCP only; asked with the address the policy just approved
    if (!useTls && pool) {
      if (pool.take(stream, dest.addr, port, this.halfClose)) return;
      pool.noteUse(dest.addr, port);
    }
    Bun.connect<TcpStream>({
      hostname: dest.addr, // the canonical IP that passed, never the name (no rebinding gap)
      port,
      data: stream,
      allowHalfOpen: this.halfClose,
      socket: useTls ? tlsHandlers : tcpHandlers,
      tls: useTls ? this.tlsOptions(dest.name) : undefined,
    }).catch(() => {}); // failures arrive through connectError
  }

  private tlsOptions(name: string | null): object {
    const extra = this.ctx.extraCa;
    if (caBundle === null || caBundle.extra !== extra) caBundle = { extra, ca: [...tls.rootCertificates, ...extra] };
    return {
      rejectUnauthorized: true,
      // SNI and the certificate check use the name asked for; an IP literal is checked against IP SANs.
      // For a literal, "" stops Bun sending the IP as SNI (RFC 6066); the IP SAN check still runs [exp].
      serverName: name ?? "",
      ...(extra.length > 0 ? { ca: caBundle.ca } : {}),
    };
  }

  /** A policy refusal: `denied` (never `error`), counted and logged with the rule. */
  private deny(id: number, d: Decision, target: string, stream?: TcpStream): void {
    if (stream) {
      stream.state = "closed";
      clearTimeout(stream.timer);
      this.forget(stream);
      this.ctx.metrics.sockets[stream.kind]--;
    }
    this.ctx.metrics.denied(d.rule);
    this.ctx.log.info("denied", { session: this.sid, id, target, rule: d.rule, reason: d.reason });
    this.transport.send({ ev: "denied", id, msg: d.reason });
  }

  private send(id: number, data: Uint8Array): void {
    const r = this.resources.get(id);
    if (r instanceof UdpRelay) return this.sendDatagram(r, data, r.peer.addr, r.peer.port);
    if (!(r instanceof TcpStream)) return this.error(id, r ? "EBADREQ" : "EBADID", r ? `send: id ${id} is a listener` : `send: unknown id ${id}`);
    if (r.localFin) return this.error(id, "EBADREQ", `send: stream ${id} was shut down for writing`);
    this.ctx.metrics.bytesUp += data.length;
    // Over the bandwidth budget the bytes wait in the stream until it is paid off: pausing the
    // WebSocket alone lets through what Bun has already read (up to a few MiB per read).
    const held = this.throttleInput(data.length);
    const problem = r.write(data, held);
    if (problem) return r.fail("ELIMIT", `${r.where}: ${problem}`);
  }

  private shutdown(id: number): void {
    const r = this.resources.get(id);
    if (!(r instanceof TcpStream)) return this.error(id, r ? "EBADREQ" : "EBADID", r ? `shutdown: id ${id} is not a stream` : `shutdown: unknown id ${id}`);
    if (!this.halfClose) return this.error(id, "EBADREQ", "shutdown needs the half_close feature (send hello first)");
    r.shutdown();
  }

  // ---- UDP ----

  private async openUdp(req: { id: number; addr: string; port: number }): Promise<void> {
    if (!this.claim(req.id)) return;
    this.pending.add(req.id);
    const dest = await this.destination(req.addr, req.port);
    if (!this.pending.has(req.id) || this.closed) return; // closed meanwhile
    const where = formatHostPort(req.addr, req.port);
    if (!dest.ok) {
      this.pending.delete(req.id);
      if (dest.denied) return this.deny(req.id, dest.denied, where);
      return this.error(req.id, dest.code, `connect_udp ${where}: ${dest.msg}`);
    }
    let relay: UdpRelay;
    try {
      relay = await UdpRelay.open(this, req.id, { addr: dest.addr, port: dest.port, name: dest.name, rule: dest.rule });
    } catch (e) {
      if (!this.pending.delete(req.id) || this.closed) return;
      return this.error(req.id, "EINTERNAL", `connect_udp ${where}: ${(e as Error).message}`);
    }
    this.ctx.metrics.sockets.udp++;
    // The client may have closed the id (or the session) while the socket was being bound.
    if (!this.pending.delete(req.id) || this.closed) return relay.close(this.closed ? "session closed" : "closed by client");
    this.resources.set(req.id, relay);
    this.transport.send({ ev: "udp_bound", id: req.id, port: relay.localPort });
  }

  private async sendTo(req: { id: number; addr: string; port: number; data: Uint8Array }): Promise<void> {
    const r = this.resources.get(req.id);
    if (!(r instanceof UdpRelay)) return this.error(req.id, r ? "EBADREQ" : "EBADID", r ? `send_to: id ${req.id} is not a UDP socket` : `send_to: unknown id ${req.id}`);
    // Every datagram's destination passes the policy; literals need no look-up.
    const literal = canonicalIp(req.addr);
    if (literal !== null) {
      const d = decideAddress(this.ctx.policy.rules, this.nameOf(literal) ?? null, literal, req.port);
      if (!d.allowed) return this.deny(req.id, d, formatHostPort(literal, req.port));
      return this.sendDatagram(r, req.data, literal, req.port);
    }
    if (this.lookups >= MAX_LOOKUPS_IN_FLIGHT) {
      this.ctx.metrics.udpDropped++;
      return this.error(req.id, "ELIMIT", `send_to ${formatHostPort(req.addr, req.port)}: ${MAX_LOOKUPS_IN_FLIGHT} name look-ups already in flight; datagram dropped`);
    }
    this.lookups++;
    const dest = await this.destination(req.addr, req.port).finally(() => this.lookups--);
    if (r.closed) return;
    if (!dest.ok) {
      if (dest.denied) return this.deny(req.id, dest.denied, formatHostPort(req.addr, req.port));
      return this.error(req.id, dest.code, `send_to ${formatHostPort(req.addr, req.port)}: ${dest.msg}`);
    }
    this.sendDatagram(r, req.data, dest.addr, dest.port);
  }

  private sendDatagram(r: UdpRelay, data: Uint8Array, addr: string, port: number): void {
    // UDP has no backpressure to apply: over the bandwidth limit a datagram is dropped and counted.
    if (this.bucket.take(data.length, performance.now()) < data.length && !this.bucket.unlimited) {
      this.ctx.metrics.udpDropped++;
      return;
    }
    const problem = r.send(data, addr, port);
    if (problem) return this.error(r.id, problem.includes("exceeds") ? "EBADREQ" : "EHOSTUNREACH", `udp ${problem}`);
    this.ctx.metrics.bytesUp += data.length;
  }

  datagram(relay: UdpRelay, data: Uint8Array, addr: string, port: number): void {
    if (this.bucket.take(data.length, performance.now()) < data.length && !this.bucket.unlimited) {
      this.ctx.metrics.udpDropped++;
      return;
    }
    this.ctx.metrics.bytesDown += data.length;
    this.transport.send({ ev: "data_from", id: relay.id, data, addr, port });
  }

  udpClosed(relay: UdpRelay, reason: string): void {
    this.ctx.metrics.sockets.udp--;
    const p = relay.peer;
    this.audit({ id: relay.id, kind: "udp", name: p.name, addr: p.addr, port: p.port, rule: p.rule, up: relay.up, down: relay.down, started: relay.started, reason });
  }

  debug(msg: string, fields: Record<string, unknown>): void {
    this.ctx.log.debug(msg, { session: this.sid, ...fields });
  }

  // ---- inbound ----

  private bind(req: { id: number; addr: string; port: number }): void {
    if (!this.claim(req.id)) return;
    const policy = this.ctx.policy;
    const d = decideBind(policy, req.addr, req.port);
    if (!d.allowed) return this.deny(req.id, d, formatHostPort(req.addr, req.port));
    const addr = canonicalIp(req.addr)!;
    const listener = new TcpListener(this, req.id, addr);
    let port: number;
    try {
      port = this.listenOnAllowedPort(listener, req.port);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === "EADDRINUSE") return this.error(req.id, "EADDRINUSE", `bind ${formatHostPort(addr, req.port)}: address in use`);
      return this.error(req.id, "EINTERNAL", `bind ${formatHostPort(addr, req.port)}: ${(e as Error).message}`);
    }
    this.resources.set(req.id, listener);
    this.ctx.metrics.sockets.listener++;
    this.ctx.log.info("listening", { session: this.sid, id: req.id, addr, port });
    this.transport.send({ ev: "listening", id: req.id, port });
  }

  /** Port 0 means "any free port inside bind_ports". */
  private listenOnAllowedPort(listener: TcpListener, port: number): number {
    const ranges = this.ctx.policy.bindPorts;
    const anyPort = ranges.length === 1 && ranges[0]!.lo <= 1024 && ranges[0]!.hi === 65535;
    if (port !== 0 || anyPort) return listener.listen(port, this.halfClose);
    const size = ranges.reduce((n, r) => n + r.hi - r.lo + 1, 0);
    let last: unknown;
    for (let attempt = 0; attempt < 32; attempt++) {
      let k = Math.floor(Math.random() * size);
      const r = ranges.find((r) => (k < r.hi - r.lo + 1 ? true : ((k -= r.hi - r.lo + 1), false)))!;
      const candidate = r.lo + k;
      if (!portAllowed(ranges, candidate)) continue;
      try {
        return listener.listen(candidate, this.halfClose);
      } catch (e) {
        last = e;
        if ((e as { code?: string }).code !== "EADDRINUSE") throw e;
      }
    }
    throw last ?? Object.assign(new Error("no free port inside bind_ports"), { code: "EADDRINUSE" });
  }

  private listen(id: number, backlog: number): void {
    const r = this.resources.get(id);
    if (!(r instanceof TcpListener)) return this.error(id, r ? "EBADREQ" : "EBADID", r ? `listen: id ${id} is not a listener` : `listen: unknown id ${id}`);
    // Bun's listener has no backlog setting: accepted and advisory (SPEC §5.1).
    r.backlog = backlog;
    this.transport.send({ ev: "listening", id, port: r.port });
  }

  accept(listener: TcpListener, remoteAddr: string, remotePort: number): TcpStream | null {
    if (this.closed || !this.hasRoom()) {
      this.ctx.log.info("inbound refused", { session: this.sid, id: listener.id, reason: "max_connections" });
      return null;
    }
    const addr = canonicalIp(remoteAddr) ?? remoteAddr;
    const id = this.allocateServerId();
    const stream = new TcpStream(this, id, "inbound", { name: null, addr, port: remotePort, rule: `bind ${listener.id}` });
    this.resources.set(id, stream);
    this.ctx.metrics.sockets.inbound++;
    this.transport.send({ ev: "accepted", id: listener.id, connId: id, remote: formatHostPort(addr, remotePort) });
    return stream;
  }

  // ---- resolve ----

  private async resolve(id: number, host: string): Promise<void> {
    if (this.resources.has(id) || this.pending.has(id)) return this.error(id, "EIDINUSE", `id ${id} is already in use in this session`);
    const rules = this.ctx.policy.rules;
    const literal = canonicalIp(host);
    if (literal === null) {
      const byName = decideName(rules, normalizeName(host), null);
      if (!byName.allowed) return this.deny(id, byName, host);
    }
    if (this.lookups >= MAX_LOOKUPS_IN_FLIGHT) return this.error(id, "ELIMIT", `resolve ${host}: ${MAX_LOOKUPS_IN_FLIGHT} look-ups already in flight in this session`);
    this.pending.add(id);
    this.lookups++;
    try {
      const { name, addrs } = await resolveTarget(host, this.ctx.resolver, this.ctx.dnsTimeoutMs).finally(() => this.lookups--);
      if (!this.pending.delete(id) || this.closed) return;
      const allowed = name === null ? filterLiteral(rules, addrs[0]!) : filterResolved(rules, name, addrs);
      if (!allowed.decision.allowed) return this.deny(id, allowed.decision, host);
      if (name !== null) {
        if (this.resolvedNames.size + allowed.addrs.length > MAX_RESOLVED_NAMES) this.resolvedNames.clear();
        for (const a of allowed.addrs) this.resolvedNames.set(a, name);
      }
      this.transport.send({ ev: "resolved", id, addrs: allowed.addrs });
    } catch (e) {
      if (!this.pending.delete(id) || this.closed) return;
      const err = e instanceof ResolveError ? e : new ResolveError("ENOTFOUND", String(e));
      this.error(id, err.code, `resolve ${host}: ${err.message}`);
    }
  }

  // ---- close ----

  private close(id: number): void {
    // A UDP socket still being bound, or a look-up in flight: abandon it; its result is dropped.
    if (this.pending.delete(id)) return this.transport.send({ ev: "closed", id });
    const r = this.resources.get(id);
    if (!r) return this.error(id, "EBADID", `close: unknown id ${id}`);
    this.resources.delete(id);
    this.transport.send({ ev: "closed", id });
    if (r instanceof TcpStream) r.closeByClient();
    else if (r instanceof UdpRelay) r.close("closed by client");
    else {
      r.close();
      this.ctx.metrics.sockets.listener--;
    }
  }

  // ---- stream callbacks (StreamOwner) ----

  opened(stream: TcpStream): void {
    this.transport.send({ ev: "connected", id: stream.id });
    if (this.wsFull) this.hold(stream);
  }

  received(stream: TcpStream, data: Uint8Array): void {
    this.ctx.metrics.bytesDown += data.length;
    this.transport.send({ ev: "data", id: stream.id, data });
    if (!this.wsFull && this.transport.buffered() > this.ctx.highWatermark) {
      // Hold every stream of the session, not only this one: each would otherwise add one more
      // read's worth (up to ~512 KiB) before noticing, and with many streams that adds up.
      this.wsFull = true;
      for (const r of this.resources.values()) if (r instanceof TcpStream && r.state === "open") this.hold(r);
    }
    const wait = this.bucket.consume(data.length, performance.now());
    if (wait > 0) {
      stream.pause(PAUSE_BANDWIDTH);
      setTimeout(() => stream.unpause(PAUSE_BANDWIDTH), wait);
    }
  }

  /** Credit is batched per loop turn: a burst of sends that the target took earns one event. */
  credit(stream: TcpStream, bytes: number): void {
    stream.outstanding -= bytes;
    this.creditOwed.set(stream, (this.creditOwed.get(stream) ?? 0) + bytes);
    this.creditFlush ??= setImmediate(() => this.flushCredit());
  }

  private flushCredit(): void {
    this.creditFlush = undefined;
    // Swap first: sending credit can make a transport (Wisp) write more, which earns new credit.
    const owed = this.creditOwed;
    this.creditOwed = new Map();
    if (this.closed) return;
    for (const [s, n] of owed) if (s.state === "open") this.transport.send({ ev: "credit", id: s.id, bytes: n });
  }

  remoteEnded(stream: TcpStream): void {
    if (this.halfClose) this.transport.send({ ev: "end", id: stream.id });
  }

  ended(stream: TcpStream, reason: string, code?: ErrorCode, msg?: string): void {
    this.backpressured.delete(stream);
    this.ctx.metrics.sockets[stream.kind]--;
    if (this.resources.get(stream.id) === stream) {
      this.resources.delete(stream.id);
      if (!this.closed) {
        if (code) this.error(stream.id, code, msg ?? reason);
        else this.transport.send({ ev: "closed", id: stream.id });
      }
    }
    const t = stream.target;
    this.audit({ id: stream.id, kind: stream.kind, name: t.name, addr: t.addr, port: t.port, rule: t.rule, up: stream.up, down: stream.down, started: stream.started, reason });
  }

  private audit(a: { id: number; kind: string; name: string | null; addr: string; port: number; rule: string; up: number; down: number; started: number; reason: string }): void {
    this.ctx.log.info("stream end", {
      session: this.sid,
      id: a.id,
      kind: a.kind,
      name: a.name,
      addr: a.addr,
      port: a.port,
      rule: a.rule,
      bytes_up: a.up,
      bytes_down: a.down,
      ms: Math.round(performance.now() - a.started),
      reason: a.reason,
    });
  }

  // ---- transport callbacks ----

  /** The WebSocket drained: resume the targets paused for its sake. */
  private hold(stream: TcpStream): void {
    stream.pause(PAUSE_BACKPRESSURE);
    this.backpressured.add(stream);
  }

  drained(): void {
    if (!this.wsFull || this.closed) return;
    if (this.transport.buffered() > this.ctx.lowWatermark) {
      // Not low enough yet; Bun may not fire drain again, so look again shortly.
      this.drainCheck ??= setTimeout(() => {
        this.drainCheck = undefined;
        this.drained();
      }, 5);
      return;
    }
    this.wsFull = false;
    for (const s of this.backpressured) s.unpause(PAUSE_BACKPRESSURE);
    this.backpressured.clear();
  }

  /** The WebSocket is gone: close everything at once. */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.idleSweep);
    this.ctx.metrics.sessions--;
    for (const r of [...this.resources.values()]) {
      if (r instanceof TcpStream) r.finish("session closed");
      else if (r instanceof UdpRelay) r.close("session closed");
      else {
        r.close();
        this.ctx.metrics.sockets.listener--;
      }
    }
    this.resources.clear();
    this.pending.clear();
    this.ctx.log.debug("session closed", { session: this.sid });
  }

  // ---- helpers ----

  /**
   * idle_timeout_secs: an open stream or UDP socket that moved no bytes either way for that
   * long is closed with ETIMEDOUT (what operators expect of a proxy; the WebSocket's own idle
   * timeout only catches vanished browsers, and Bun rounds it up to 8 s).
   */
  private sweepIdle(secs: number): void {
    const now = performance.now();
    for (const r of this.resources.values()) {
      if (r instanceof TcpListener || (r instanceof TcpStream && r.state !== "open")) continue;
      const bytes = r.up + r.down;
      const mark = idleMarks.get(r);
      if (mark === undefined || mark.bytes !== bytes) {
        idleMarks.set(r, { bytes, at: now });
        continue;
      }
      if (now - mark.at < secs * 1000) continue;
      const msg = `no bytes either way for ${secs} s (idle_timeout_secs)`;
      if (r instanceof TcpStream) r.fail("ETIMEDOUT", `${r.where}: ${msg}`, "idle timeout");
      else {
        this.resources.delete(r.id);
        this.error(r.id, "ETIMEDOUT", `udp ${formatHostPort(r.peer.addr, r.peer.port)}: ${msg}`);
        r.close("idle timeout");
      }
    }
  }

  /** Upload bandwidth: stop reading the client until the bucket is out of debt. */
  /** Returns true while the upload budget is in debt (the bytes must wait). */
  private throttleInput(bytes: number): boolean {
    const now = performance.now();
    const wait = this.bucket.consume(bytes, now);
    if (wait <= 0) return false;
    if (now + wait <= this.inputPausedUntil) return true;
    const first = this.inputPausedUntil <= now;
    this.inputPausedUntil = now + wait;
    if (!first) return true;
    this.transport.pauseInput();
    const resume = () => {
      const left = this.inputPausedUntil - performance.now();
      if (left > 1) return void setTimeout(resume, left);
      if (this.closed) return;
      // Paid off: write what waited, then read the client again.
      for (const r of this.resources.values()) if (r instanceof TcpStream && r.state === "open") r.flush();
      this.transport.resumeInput();
    };
    setTimeout(resume, wait);
    return true;
  }

  private forget(stream: TcpStream): void {
    if (this.resources.get(stream.id) === stream) this.resources.delete(stream.id);
  }

  /** A fresh id for a server-created resource, never colliding with a client's. */
  allocateServerId(): number {
    while (this.resources.has(this.nextServerId) || this.pending.has(this.nextServerId)) this.nextServerId++;
    if (this.nextServerId > MAX_ID) this.nextServerId = SERVER_ID_BASE;
    return this.nextServerId++;
  }

  error(id: number, code: ErrorCode, msg: string): void {
    this.ctx.metrics.error(code);
    if (code === "EINTERNAL" || code === "EBADREQ") this.ctx.log.debug("request error", { session: this.sid, id, code, msg });
    if (!this.closed) this.transport.send({ ev: "error", id, code, msg });
  }
}

function filterLiteral(rules: Parameters<typeof decideAddress>[0], addr: string): { addrs: string[]; decision: Decision } {
  const decision = decideAddress(rules, null, addr, null);
  return { addrs: decision.allowed ? [addr] : [], decision };
}
