// Wisp (v1 and v2) as an adapter: the Wisp codec plus a Transport around the same Session the
// wasmnet protocol uses, so policy, limits, bandwidth, metrics and audit all apply unchanged.
// Wisp CONNECT/DATA/CLOSE become connect/connect_udp, send and close requests; session events
// become DATA/CLOSE/CONTINUE packets.
//
// Flow control: the session runs with version-2 byte credit (`hello` with `flow`), so it never
// holds more than `window` bytes per stream. Wisp counts credit in packets, so this adapter
// keeps what a client sends beyond the byte window (it is allowed to, within its packet credit)
// and hands it on as the session returns credit, and it sends CONTINUE sized so that packets in
// flight stay within both the packet buffer and the byte window. A client whose packets are so
// large that its packet credit still overshoots gets its WebSocket paused (a slowdown, never
// loss): per stream at most 2 × window bytes are held, whatever the client does.
import type { ServerWebSocket } from "bun";
import type { ErrorCode } from "../protocol/constants.ts";
import type { Event, Request } from "../protocol/messages.ts";
import {
  decodeWispPacket,
  decodeWispPasswordClient,
  encodeWispClose,
  encodeWispContinue,
  encodeWispData,
  encodeWispMotd,
  encodeWispPacket,
  encodeWispPasswordServer,
  WISP_CLOSE,
  WISP_EXT,
  WISP_HEADER_BYTES,
  WISP_STREAM,
  type WispExtension,
  type WispPacket,
} from "../protocol/wisp.ts";
import { Session, type Transport } from "../session/session.ts";
import type { SessionContext } from "../session/context.ts";
import { GatedTransport, PAUSE_HELD } from "./gated-transport.ts";
import type { WsData } from "./ws-transport.ts";

/** Packets each TCP stream may have in flight (the CONTINUE buffer size; wisp-js and epoxy use 128). */
export const WISP_BUFFER_PACKETS = 128;
/** v2: how long the server waits for the client's INFO before carrying on as version 1. */
export const WISP_INFO_TIMEOUT_MS = 5000;
/** Ids of recently closed streams remembered, so late DATA for them is dropped quietly. */
const RECENTLY_CLOSED = 1024;
/** UDP datagrams kept per stream while its socket is being bound; later ones are dropped (UDP may). */
const EARLY_DATAGRAMS = 64;


export interface WispConfig {
  version: 1 | 2;
  /** Sent to v2 clients through the MOTD extension. */
  motd?: string | null;
  /** Password auth (v2 extension 0x02). Off when absent: the policy has no credentials yet. */
  passwordAuth?: ((user: string, password: string) => boolean) | null;
  /** Offer UDP to v2 clients (default true). */
  udp?: boolean;
  bufferPackets?: number;
}

/** What wasmnet.ts drives for a non-wasmnet socket. */
export interface WsAdapter {
  message(message: string | Buffer): void;
  /** The WebSocket is closing; the session is destroyed right after. */
  closing(): void;
}

/** Session error codes as Wisp CLOSE reasons. */
export function wispReason(code: ErrorCode): number {
  switch (code) {
    case "ECONNREFUSED":
      return WISP_CLOSE.refused;
    case "ETIMEDOUT":
      return WISP_CLOSE.noResponse;
    case "EHOSTUNREACH":
    case "ENOTFOUND":
      return WISP_CLOSE.unreachable;
    case "ELIMIT":
      return WISP_CLOSE.throttled;
    case "EBADREQ":
    case "EBADID":
    case "EIDINUSE":
      return WISP_CLOSE.invalidInfo;
    default:
      return WISP_CLOSE.networkError;
  }
}

class WispStream {
  /** Bytes handed to the session and not yet credited back (≤ window). */
  handed = 0;
  /** Bytes the client sent beyond the window, oldest first. */
  held: Uint8Array[] = [];
  heldBytes = 0;
  /** Sizes (bytes not yet credited) of the packets in flight, oldest first, from `head`. */
  private sizes: number[] = [];
  private head = 0;
  /** Our last CONTINUE value and the packets received since: the client's credit is at least their difference. */
  grant: number;
  sinceGrant = 0;
  /** Running average packet size, to size CONTINUE in bytes as well as packets. */
  avg = 0;
  connected = false;
  /** UDP: datagrams the client sent before the socket was bound. */
  early: Uint8Array[] = [];

  constructor(
    readonly id: number,
    readonly udp: boolean,
    initialGrant: number,
  ) {
    this.grant = initialGrant;
  }

  get packetsInFlight(): number {
    return this.sizes.length - this.head;
  }

  received(n: number): void {
    this.sinceGrant++;
    this.avg = this.avg === 0 ? n : this.avg * 0.875 + n * 0.125;
    if (n > 0) this.sizes.push(n);
  }

  /** The target took `bytes`: retire fully written packets. */
  credited(bytes: number): void {
    this.handed -= bytes;
    const s = this.sizes;
    while (bytes > 0 && this.head < s.length) {
      const left = s[this.head]!;
      if (left > bytes) {
        s[this.head] = left - bytes;
        break;
      }
      bytes -= left;
      this.head++;
    }
    if (this.head > 64 && this.head * 2 > s.length) {
      this.sizes = s.slice(this.head);
      this.head = 0;
    }
  }
}

export class WispTransport extends GatedTransport implements Transport, WsAdapter {
  readonly session: Session;
  private readonly streams = new Map<number, WispStream>();
  private readonly recentlyClosed = new Set<number>();
  /** Ids being refused right now: their `error` event becomes a CLOSE although no stream exists. */
  private readonly refusing = new Set<number>();
  private readonly buffer: number;
  private window = 0;
  /** v2 handshake: waiting for the client's INFO. Packets are not processed meanwhile. */
  private handshaking: boolean;
  private infoTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly offered: WispExtension[] = [];
  private negotiated = new Set<number>();
  private version: 1 | 2 = 1;
  private readonly overfull = new Set<WispStream>();

  constructor(
    ws: ServerWebSocket<WsData>,
    ctx: SessionContext,
    private readonly config: WispConfig,
  ) {
    super(ws);
    this.buffer = Math.max(1, config.bufferPackets ?? WISP_BUFFER_PACKETS);
    this.session = new Session(ctx, this, ws.data.remote);
    // Byte credit from the session; its `hello` answer is swallowed in send() (it sets `window`).
    this.session.handle({ ok: true, req: { op: "hello", id: 0, version: 2, features: ["flow"] } });
    if (this.window <= 0) this.window = ctx.policy.limits.streamBufferBytes;
    this.handshaking = config.version === 2;
    if (config.version === 2) {
      if (config.udp !== false) this.offered.push({ id: WISP_EXT.udp, payload: new Uint8Array(0) });
      if (config.passwordAuth) this.offered.push({ id: WISP_EXT.passwordAuth, payload: encodeWispPasswordServer(true) });
      if (config.motd) this.offered.push({ id: WISP_EXT.motd, payload: encodeWispMotd(config.motd) });
      this.offered.push({ id: WISP_EXT.streamConfirmation, payload: new Uint8Array(0) });
      // wisp-js (and the v2 spec) expect INFO first, then CONTINUE once the client's INFO is in.
      this.packet({ type: "info", stream: 0, major: 2, minor: 0, extensions: this.offered });
      this.infoTimer = setTimeout(() => this.noInfo(), WISP_INFO_TIMEOUT_MS);
    } else if (config.passwordAuth) {
      // Credentials travel in the v2 INFO exchange: a v1 client has no way to log in.
      this.reject(WISP_CLOSE.authMissingCredentials, "Wisp password authentication needs Wisp v2");
    } else {
      this.raw(encodeWispContinue(0, this.buffer));
    }
  }

  // ---- Transport (session → client) ----

  send(ev: Event): void {
    if (ev.ev === "hello") {
      this.window = ev.window;
      return;
    }
    if (ev.ev === "error" && this.refusing.has(ev.id)) {
      this.refusing.delete(ev.id);
      return this.raw(encodeWispClose(ev.id, wispReason(ev.code)));
    }
    const s = this.streams.get(ev.id);
    if (!s) return; // id 0, or a stream the client already closed
    switch (ev.ev) {
      case "data":
        return this.raw(encodeWispData(ev.id, ev.data));
      case "data_from":
        return this.raw(encodeWispData(ev.id, ev.data));
      case "credit":
        return this.credit(s, ev.bytes);
      case "connected":
        s.connected = true;
        if (this.negotiated.has(WISP_EXT.streamConfirmation)) {
          s.grant = this.allowance(s);
          s.sinceGrant = 0;
          this.raw(encodeWispContinue(s.id, s.grant));
        }
        return;
      case "udp_bound": {
        s.connected = true;
        const early = s.early;
        s.early = [];
        for (const d of early) if (this.streams.get(s.id) === s) this.request({ op: "send", id: s.id, data: d });
        return;
      }
      case "closed":
        return this.drop(s, WISP_CLOSE.voluntary);
      case "error":
        return this.drop(s, wispReason(ev.code));
      case "denied":
        return this.drop(s, WISP_CLOSE.blocked);
      default:
        return; // end, resolved, listening, accepted: never asked for
    }
  }


  // ---- WsAdapter (client → session) ----

  message(message: string | Buffer): void {
    if (this.session.closed) return;
    const d = typeof message === "string" ? null : decodeWispPacket(message);
    if (this.handshaking) {
      if (d?.ok && d.packet.type === "info" && d.packet.stream === 0) return this.clientInfo(d.packet);
      this.noInfo();
      if (this.session.closed || this.ws.readyState !== 1) return;
    }
    if (d === null) return this.malformed(0, "EBADREQ", "Wisp uses binary frames; got a text frame");
    if (!d.ok) {
      if (d.stream === null || d.stream === 0) return this.malformed(0, "EBADREQ", `Wisp: ${d.msg}`);
      return this.refuse(d.stream, "EBADREQ", `Wisp: ${d.msg}`);
    }
    const p = d.packet;
    switch (p.type) {
      case "connect":
        return this.connect(p);
      case "data":
        return this.data(p.stream, p.data);
      case "close": {
        if (p.stream === 0) return; // nothing to close at connection level from the client side
        const s = this.streams.get(p.stream);
        if (!s) return;
        this.forget(s);
        this.request({ op: "close", id: s.id });
        return;
      }
      case "continue":
      case "info":
        return; // only the server sends CONTINUE; INFO is a handshake packet
    }
  }

  closing(): void {
    clearTimeout(this.infoTimer);
    this.streams.clear();
    this.overfull.clear();
  }

  // ---- handshake ----

  private clientInfo(p: Extract<WispPacket, { type: "info" }>): void {
    const theirs = new Map(p.extensions.map((e) => [e.id, e] as const));
    if (this.config.passwordAuth) {
      const creds = theirs.get(WISP_EXT.passwordAuth);
      const parsed = creds ? decodeWispPasswordClient(creds.payload) : null;
      if (!parsed) return this.reject(WISP_CLOSE.authMissingCredentials, "Wisp password authentication required");
      if (!this.config.passwordAuth(parsed.user, parsed.password)) return this.reject(WISP_CLOSE.authBadPassword, "Wisp password rejected");
    }
    for (const e of this.offered) if (theirs.has(e.id)) this.negotiated.add(e.id);
    this.finishHandshake(p.major >= 2 ? 2 : 1);
  }

  /** v2 without the client's INFO (it timed out, or the client went straight to streams). */
  private noInfo(): void {
    if (!this.handshaking) return;
    // Never a way around authentication.
    if (this.config.passwordAuth) return this.reject(WISP_CLOSE.authMissingCredentials, "Wisp password authentication required");
    this.finishHandshake(1); // carry on as version 1, as the spec allows
  }

  private finishHandshake(version: 1 | 2): void {
    if (!this.handshaking) return;
    this.handshaking = false;
    clearTimeout(this.infoTimer);
    this.version = version;
    if (version === 1) this.negotiated.clear();
    this.raw(encodeWispContinue(0, this.buffer));
  }

  private reject(reason: number, why: string): void {
    clearTimeout(this.infoTimer);
    this.handshaking = false;
    this.raw(encodeWispClose(0, reason));
    this.session.ctx.log.info("wisp handshake refused", { session: this.session.sid, why });
    this.ws.close(1008, why);
  }

  // ---- streams ----

  private connect(p: Extract<WispPacket, { type: "connect" }>): void {
    const id = p.stream;
    if (id === 0) return this.malformed(0, "EBADREQ", "Wisp CONNECT on stream 0 (reserved)");
    const old = this.streams.get(id);
    if (old) {
      // The client's view of this id is now ambiguous: end the old stream as well.
      this.forget(old);
      this.request({ op: "close", id });
      return this.refuse(id, "EIDINUSE", `Wisp CONNECT reuses open stream ${id}`);
    }
    const host = p.host.trim();
    if (p.streamType !== WISP_STREAM.tcp && p.streamType !== WISP_STREAM.udp)
      return this.refuse(id, "EBADREQ", `Wisp CONNECT with unknown stream type 0x${p.streamType.toString(16)}`);
    if (p.port === 0 || host === "") return this.refuse(id, "EBADREQ", `Wisp CONNECT to invalid destination "${host}":${p.port}`);
    const udp = p.streamType === WISP_STREAM.udp;
    if (udp && this.version === 2 && !this.negotiated.has(WISP_EXT.udp))
      return this.refuse(id, "EBADREQ", "Wisp UDP stream without the UDP extension");
    this.recentlyClosed.delete(id);
    const s = new WispStream(id, udp, this.buffer);
    this.streams.set(id, s);
    this.request({ op: udp ? "connect_udp" : "connect", id, addr: host, port: p.port });
  }

  private data(id: number, data: Uint8Array): void {
    const s = this.streams.get(id);
    if (!s) {
      if (id === 0 || this.recentlyClosed.has(id)) return; // late DATA for a stream that just ended
      return this.refuse(id, "EBADID", `Wisp DATA for unknown stream ${id}`);
    }
    const max = this.session.ctx.policy.limits.maxMessageBytes;
    if (data.length + WISP_HEADER_BYTES > max)
      // Same rule as the wasmnet protocol: an oversized send ends that stream with ELIMIT.
      return this.refuse(id, "ELIMIT", `Wisp DATA of ${data.length} bytes exceeds max_message_bytes (${max})`);
    if (s.udp) {
      if (s.connected) return this.request({ op: "send", id, data });
      if (s.early.length < EARLY_DATAGRAMS) s.early.push(data);
      else this.session.ctx.metrics.udpDropped++;
      return;
    }
    s.received(data.length);
    if (data.length === 0) return this.maybeContinue(s);
    if (s.held.length === 0 && s.handed + data.length <= this.window) {
      s.handed += data.length;
      this.request({ op: "send", id, data });
    } else {
      s.held.push(data);
      s.heldBytes += data.length;
      this.pump(s);
    }
    if (this.streams.get(id) !== s) return;
    if (s.heldBytes > this.window && !this.overfull.has(s)) {
      this.overfull.add(s);
      this.pause(PAUSE_HELD);
    }
    this.maybeContinue(s);
  }

  private pumping = false;

  /** Hand held bytes to the session while the byte window has room. */
  private pump(s: WispStream): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (s.held.length > 0 && s.handed < this.window && this.streams.get(s.id) === s) {
        const head = s.held[0]!;
        const room = this.window - s.handed;
        const chunk = head.length <= room ? head : head.subarray(0, room);
        if (chunk === head) s.held.shift();
        else s.held[0] = head.subarray(room);
        s.heldBytes -= chunk.length;
        s.handed += chunk.length;
        this.request({ op: "send", id: s.id, data: chunk });
      }
    } finally {
      this.pumping = false;
    }
    if (this.overfull.has(s) && s.heldBytes <= this.window / 2) this.relieve(s);
  }

  private credit(s: WispStream, bytes: number): void {
    s.credited(bytes);
    if (s.held.length > 0) this.pump(s);
    if (this.streams.get(s.id) === s) this.maybeContinue(s);
  }

  /** Packets the client may send from now: the packet buffer, bounded by the byte window. */
  private allowance(s: WispStream): number {
    const inFlight = s.handed + s.heldBytes;
    if (inFlight >= this.window) return 0;
    let r = this.buffer - s.packetsInFlight;
    if (s.avg > 0) r = Math.min(r, Math.max(1, Math.floor((this.window - inFlight) / s.avg)));
    return Math.max(0, r);
  }

  /** Send CONTINUE when the client is (nearly) out of credit or a good deal more is free. */
  private maybeContinue(s: WispStream): void {
    if (s.udp) return; // no CONTINUE for UDP streams (spec)
    const r = this.allowance(s);
    if (r <= 0) return;
    const left = s.grant - s.sinceGrant; // the client has at least this much credit left
    if (left > 0 && r - left < Math.max(1, this.buffer >> 2)) return;
    s.grant = r;
    s.sinceGrant = 0;
    this.raw(encodeWispContinue(s.id, r));
  }

  // ---- helpers ----

  private request(req: Request): void {
    this.session.handle({ ok: true, req });
  }

  /** Refuse a stream id with CLOSE (reason from `code`), through the session so it is counted and logged. */
  private refuse(id: number, code: ErrorCode, msg: string): void {
    const s = this.streams.get(id);
    if (s) {
      this.forget(s);
      this.request({ op: "close", id });
    }
    this.refusing.add(id);
    this.session.handle({ ok: false, id, code, msg });
    // A session that is closed emits nothing: answer directly.
    if (this.refusing.delete(id)) this.raw(encodeWispClose(id, wispReason(code)));
  }

  /** A malformed packet with no stream to close: counted and logged by the session, no reply. */
  private malformed(id: number, code: ErrorCode, msg: string): void {
    this.session.handle({ ok: false, id, code, msg });
  }

  /** The session ended a stream: tell the client with CLOSE. */
  private drop(s: WispStream, reason: number): void {
    this.forget(s);
    this.raw(encodeWispClose(s.id, reason));
  }

  private forget(s: WispStream): void {
    if (this.streams.get(s.id) === s) this.streams.delete(s.id);
    s.held = [];
    s.heldBytes = 0;
    s.early = [];
    this.relieve(s);
    this.recentlyClosed.add(s.id);
    if (this.recentlyClosed.size > RECENTLY_CLOSED) this.recentlyClosed.delete(this.recentlyClosed.values().next().value!);
  }

  private relieve(s: WispStream): void {
    if (this.overfull.delete(s) && this.overfull.size === 0) this.unpause(PAUSE_HELD);
  }


  private packet(p: WispPacket): void {
    this.raw(encodeWispPacket(p));
  }

  private raw(b: Uint8Array): void {
    const ws = this.ws;
    if (ws.readyState !== 1) return;
    // 0 = Bun dropped it; targets are paused long before that, so end rather than lose data.
    if (ws.sendBinary(b) === 0) ws.close(1011, "outgoing buffer limit reached");
  }
}

export function openWisp(ws: ServerWebSocket<WsData>, ctx: SessionContext, config: WispConfig): WispTransport {
  const t = new WispTransport(ws, ctx, config);
  ws.data.session = t.session;
  ws.data.adapter = t;
  return t;
}
