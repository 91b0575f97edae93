// One browser session (one WebSocket, or later one Wisp connection): the id table, the limits,
// and the dispatch of requests to the socket layer. Transport-agnostic: it receives decoded
// requests and emits events through a Transport; the codec is the transport's business.
import tls from "node:tls";
import { SERVER_ID_BASE } from "../constants.ts";
import { TokenBucket } from "../limits/token-bucket.ts";
import { resolveTarget, ResolveError } from "../net/resolve.ts";
import { PAUSE_BACKPRESSURE, PAUSE_BANDWIDTH, TcpStream, tcpHandlers, tlsHandlers, type StreamOwner } from "../net/tcp-stream.ts";
import { canonicalIp, normalizeName } from "../policy/address.ts";
import { chooseAddress, decideName, type Decision } from "../policy/decide.ts";
import { FEATURES, MAX_ID, PROTOCOL_VERSION, type ErrorCode } from "../protocol/constants.ts";
import type { Decoded, Event, Request } from "../protocol/messages.ts";
import type { SocketKind } from "../server/metrics.ts";
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

/** Anything a client id can name. */
export interface Resource {
  readonly id: number;
  readonly kind: SocketKind;
}

let sessionCounter = 0;
let caBundle: { extra: string[]; ca: string[] } | null = null;

export class Session implements StreamOwner {
  readonly sid = (++sessionCounter).toString(36) + "-" + Math.random().toString(36).slice(2, 8);
  version = 1;
  flow = false;
  halfClose = false;
  private started = false;
  closed = false;
  private readonly resources = new Map<number, TcpStream | Resource>();
  /** Streams paused because the WebSocket toward the browser is full. */
  private readonly backpressured = new Set<TcpStream>();
  private readonly bucket: TokenBucket;
  private inputPausedUntil = 0;
  private nextServerId = SERVER_ID_BASE;

  constructor(
    readonly ctx: SessionContext,
    readonly transport: Transport,
    readonly remote: string,
  ) {
    this.bucket = TokenBucket.forMbps(ctx.policy.maxBandwidthMbps);
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
      case "send":
        return this.send(req.id, req.data);
      case "close":
        return this.close(req.id);
      case "shutdown":
        return this.shutdown(req.id);
      case "resolve":
        return void this.resolve(req.id, req.name);
      case "connect_udp":
      case "send_to":
      case "bind":
      case "listen":
        return this.error(req.id, "EBADREQ", `${req.op} is not supported yet`);
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
      features: FEATURES.filter((f) => req.features.includes(f)),
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
    if (this.resources.has(id)) {
      this.error(id, "EIDINUSE", `id ${id} is already in use in this session`);
      return false;
    }
    const max = this.ctx.policy.maxConnections;
    if (max > 0 && this.resources.size >= max) {
      this.error(id, "ELIMIT", `max_connections (${max}) reached for this session`);
      return false;
    }
    return true;
  }

  private openStream(req: { id: number; addr: string; port: number }, kind: "tcp" | "tls"): void {
    if (!this.claim(req.id)) return;
    const stream = new TcpStream(this, req.id, kind, { name: null, addr: req.addr, port: req.port, rule: "" });
    this.resources.set(req.id, stream);
    this.ctx.metrics.sockets[kind]++;
    const secs = this.ctx.policy.connectionTimeoutSecs;
    stream.timer = setTimeout(() => stream.fail("ETIMEDOUT", `connect ${stream.where} timed out after ${secs} s`), secs * 1000);
    void this.dial(stream, req.addr, req.port, kind === "tls");
  }

  private async dial(stream: TcpStream, host: string, port: number, useTls: boolean): Promise<void> {
    const rules = this.ctx.policy.rules;
    const op = useTls ? "connect_tls" : "connect";
    // A name refused by a name rule is refused before anything is looked up.
    if (canonicalIp(host) === null) {
      const byName = decideName(rules, normalizeName(host), port);
      if (!byName.allowed) return this.deny(stream, byName);
    }
    let name: string | null = null;
    let addrs: string[];
    try {
      ({ name, addrs } = await resolveTarget(host, this.ctx.resolver, this.ctx.dnsTimeoutMs));
    } catch (e) {
      if (stream.state !== "connecting") return;
      const err = e instanceof ResolveError ? e : new ResolveError("ENOTFOUND", String(e));
      return stream.fail(err.code, `${op} ${host}:${port}: ${err.message}`);
    }
    if (stream.state !== "connecting") return;
    const choice = chooseAddress(rules, name, addrs, port);
    if (choice.addr === null) return this.deny(stream, choice.decision);
    stream.target = { name, addr: choice.addr, port, rule: choice.decision.rule };
    const tlsOptions = useTls ? this.tlsOptions(name) : undefined;
    Bun.connect<TcpStream>({
      hostname: choice.addr, // the canonical IP that passed, never the name (no rebinding gap)
      port,
      data: stream,
      allowHalfOpen: this.halfClose,
      socket: useTls ? tlsHandlers : tcpHandlers,
      tls: tlsOptions,
    }).catch(() => {}); // failures arrive through connectError
  }

  private tlsOptions(name: string | null): object {
    const extra = this.ctx.extraCa;
    if (caBundle === null || caBundle.extra !== extra) caBundle = { extra, ca: [...tls.rootCertificates, ...extra] };
    return {
      rejectUnauthorized: true,
      ...(name !== null ? { serverName: name } : {}),
      ...(extra.length > 0 ? { ca: caBundle.ca } : {}),
    };
  }

  private deny(stream: TcpStream, d: Decision): void {
    stream.state = "closed";
    clearTimeout(stream.timer);
    this.forget(stream);
    this.ctx.metrics.sockets[stream.kind]--;
    this.ctx.metrics.denied(d.rule);
    this.ctx.log.info("denied", { session: this.sid, id: stream.id, target: `${stream.target.addr}:${stream.target.port}`, rule: d.rule, reason: d.reason });
    this.transport.send({ ev: "denied", id: stream.id, msg: d.reason });
  }

  private send(id: number, data: Uint8Array): void {
    const r = this.resources.get(id);
    if (!(r instanceof TcpStream)) return this.error(id, r ? "EBADREQ" : "EBADID", r ? `send: id ${id} is a ${r.kind}` : `send: unknown id ${id}`);
    this.ctx.metrics.bytesUp += data.length;
    const problem = r.write(data);
    if (problem) {
      r.fail("ELIMIT", `${r.where}: ${problem}`);
      return;
    }
    this.throttleInput(data.length);
  }

  private close(id: number): void {
    const r = this.resources.get(id);
    if (!r) return this.error(id, "EBADID", `close: unknown id ${id}`);
    if (r instanceof TcpStream) {
      this.forget(r);
      this.transport.send({ ev: "closed", id });
      r.closeByClient();
    }
  }

  private shutdown(id: number): void {
    const r = this.resources.get(id);
    if (!(r instanceof TcpStream)) return this.error(id, r ? "EBADREQ" : "EBADID", r ? `shutdown: id ${id} is a ${r.kind}` : `shutdown: unknown id ${id}`);
    if (!this.halfClose) return this.error(id, "EBADREQ", "shutdown needs the half_close feature (send hello first)");
    r.shutdown();
  }

  private async resolve(id: number, host: string): Promise<void> {
    if (this.resources.has(id)) return this.error(id, "EIDINUSE", `id ${id} is already in use in this session`);
    try {
      const { addrs } = await resolveTarget(host, this.ctx.resolver, this.ctx.dnsTimeoutMs);
      if (!this.closed) this.transport.send({ ev: "resolved", id, addrs });
    } catch (e) {
      const err = e instanceof ResolveError ? e : new ResolveError("ENOTFOUND", String(e));
      this.error(id, err.code, `resolve ${host}: ${err.message}`);
    }
  }

  // ---- stream callbacks (StreamOwner) ----

  opened(stream: TcpStream): void {
    this.transport.send({ ev: "connected", id: stream.id });
  }

  received(stream: TcpStream, data: Uint8Array): void {
    this.ctx.metrics.bytesDown += data.length;
    this.transport.send({ ev: "data", id: stream.id, data });
    if (this.transport.buffered() > this.ctx.highWatermark) {
      stream.pause(PAUSE_BACKPRESSURE);
      this.backpressured.add(stream);
    }
    const wait = this.bucket.consume(data.length, performance.now());
    if (wait > 0) {
      stream.pause(PAUSE_BANDWIDTH);
      setTimeout(() => stream.unpause(PAUSE_BANDWIDTH), wait);
    }
  }

  credit(stream: TcpStream, bytes: number): void {
    stream.outstanding -= bytes;
    this.transport.send({ ev: "credit", id: stream.id, bytes });
  }

  remoteEnded(stream: TcpStream): void {
    if (this.halfClose) this.transport.send({ ev: "end", id: stream.id });
  }

  ended(stream: TcpStream, reason: string, code?: ErrorCode, msg?: string): void {
    this.backpressured.delete(stream);
    this.ctx.metrics.sockets[stream.kind]--;
    const ownsId = this.resources.get(stream.id) === stream;
    if (ownsId) {
      this.resources.delete(stream.id);
      if (!this.closed) {
        if (code) this.error(stream.id, code, msg ?? reason);
        else this.transport.send({ ev: "closed", id: stream.id });
      }
    }
    const t = stream.target;
    this.ctx.log.info("stream end", {
      session: this.sid,
      id: stream.id,
      kind: stream.kind,
      name: t.name,
      addr: t.addr,
      port: t.port,
      rule: t.rule,
      bytes_up: stream.up,
      bytes_down: stream.down,
      ms: Math.round(performance.now() - stream.started),
      reason,
    });
  }

  // ---- transport callbacks ----

  /** The WebSocket drained: resume the targets paused for its sake. */
  drained(): void {
    if (this.backpressured.size === 0 || this.transport.buffered() > this.ctx.lowWatermark) return;
    for (const s of this.backpressured) s.unpause(PAUSE_BACKPRESSURE);
    this.backpressured.clear();
  }

  /** The WebSocket is gone: close everything at once. */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.metrics.sessions--;
    for (const r of [...this.resources.values()]) {
      if (r instanceof TcpStream) r.finish("session closed");
    }
    this.resources.clear();
    this.ctx.log.debug("session closed", { session: this.sid });
  }

  // ---- helpers ----

  /** Upload bandwidth: stop reading the WebSocket until the bucket is out of debt. */
  private throttleInput(bytes: number): void {
    const now = performance.now();
    const wait = this.bucket.consume(bytes, now);
    if (wait <= 0 || now + wait <= this.inputPausedUntil) return;
    const first = this.inputPausedUntil <= now;
    this.inputPausedUntil = now + wait;
    if (!first) return;
    this.transport.pauseInput();
    const resume = () => {
      const left = this.inputPausedUntil - performance.now();
      if (left > 1) return void setTimeout(resume, left);
      if (!this.closed) this.transport.resumeInput();
    };
    setTimeout(resume, wait);
  }

  private forget(stream: TcpStream): void {
    if (this.resources.get(stream.id) === stream) this.resources.delete(stream.id);
  }

  /** A fresh id for a server-created resource, never colliding with a client's. */
  allocateServerId(): number {
    while (this.resources.has(this.nextServerId)) this.nextServerId++;
    if (this.nextServerId > MAX_ID) this.nextServerId = SERVER_ID_BASE;
    return this.nextServerId++;
  }

  error(id: number, code: ErrorCode, msg: string): void {
    this.ctx.metrics.error(code);
    if (code === "EINTERNAL" || code === "EBADREQ") this.ctx.log.debug("request error", { session: this.sid, id, code, msg });
    if (!this.closed) this.transport.send({ ev: "error", id, code, msg });
  }
}
