// Wisp (v1 and v2) as an adapter: Wisp CONNECT/DATA/CLOSE become connect/connect_udp, send and
// close requests on the same Session the wasmnet protocol uses (policy, limits, bandwidth,
// metrics and audit apply unchanged); session events become DATA/CLOSE/CONTINUE packets.
//
// Flow control: the session runs with byte credit (`flow`), so it never holds more than `window`
// bytes per stream. Wisp counts credit in packets, so each stream's UploadWindow keeps what a
// client sends beyond the byte window (it is allowed to, within its packet credit), and CONTINUE
// is sized so that packets in flight stay within both the packet buffer and the byte window. A
// client whose packets are so large that its packet credit still overshoots gets its WebSocket
// paused (a slowdown, never loss): per stream at most 2 × window bytes are held.
import type { ServerWebSocket } from "bun";
import type { ErrorCode } from "../protocol/constants.ts";
import type { Event } from "../protocol/messages.ts";
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
  wispCloseReason,
  type WispExtension,
  type WispPacket,
} from "../protocol/wisp.ts";
import type { SessionContext } from "../session/context.ts";
import { INPUT_PAUSE, UploadWindow, WsAdapter, type WsData } from "./base.ts";

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
  /** Password auth (v2 extension 0x02). Off when absent. */
  passwordAuth?: ((user: string, password: string) => boolean) | null;
  /** Offer UDP to v2 clients (default true). */
  udp?: boolean;
  bufferPackets?: number;
}

class WispStream {
  /** TCP: client bytes beyond the session's byte window. */
  readonly upload: UploadWindow;
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
    window: number,
    forward: (chunk: Uint8Array) => void,
  ) {
    this.grant = initialGrant;
    this.upload = new UploadWindow(window, forward);
  }

  get packetsInFlight(): number {
    return this.sizes.length - this.head;
  }

  received(n: number): void {
    this.sinceGrant++;
    this.avg = this.avg === 0 ? n : this.avg * 0.875 + n * 0.125;
    if (n > 0) this.sizes.push(n);
  }

  /** The target took `bytes`: retire fully written packets, then hand on what waited. */
  credited(bytes: number): void {
    const s = this.sizes;
    let left = bytes;
    while (left > 0 && this.head < s.length) {
      const size = s[this.head]!;
      if (size > left) {
        s[this.head] = size - left;
        break;
      }
      left -= size;
      this.head++;
    }
    if (this.head > 64 && this.head * 2 > s.length) {
      this.sizes = s.slice(this.head);
      this.head = 0;
    }
    this.upload.credited(bytes);
  }

  drop(): void {
    this.upload.clear();
    this.early = [];
  }
}

export class WispAdapter extends WsAdapter {
  private readonly streams = new Map<number, WispStream>();
  private readonly recentlyClosed = new Set<number>();
  private readonly buffer: number;
  private readonly window: number;
  /** v2 handshake: waiting for the client's INFO. Packets are not processed meanwhile. */
  private handshaking: boolean;
  private infoTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly offered: WispExtension[] = [];
  private negotiated = new Set<number>();
  private version: 1 | 2 = 1;
  /** Streams holding more than a window: the client is not read while any is. */
  private readonly overfull = new Set<WispStream>();

  constructor(
    ws: ServerWebSocket<WsData>,
    ctx: SessionContext,
    private readonly config: WispConfig,
  ) {
    super(ws, ctx, { flow: true });
    this.buffer = Math.max(1, config.bufferPackets ?? WISP_BUFFER_PACKETS);
    this.window = this.session.window;
    this.handshaking = config.version === 2;
    if (config.version === 2) {
      if (config.udp !== false) this.offered.push({ id: WISP_EXT.udp, payload: new Uint8Array(0) });
      if (config.passwordAuth) this.offered.push({ id: WISP_EXT.passwordAuth, payload: encodeWispPasswordServer(true) });
      if (config.motd) this.offered.push({ id: WISP_EXT.motd, payload: encodeWispMotd(config.motd) });
      this.offered.push({ id: WISP_EXT.streamConfirmation, payload: new Uint8Array(0) });
      // wisp-js (and the v2 spec) expect INFO first, then CONTINUE once the client's INFO is in.
      this.sendFrame(encodeWispPacket({ type: "info", stream: 0, major: 2, minor: 0, extensions: this.offered }));
      this.infoTimer = setTimeout(() => this.noInfo(), WISP_INFO_TIMEOUT_MS);
    } else if (config.passwordAuth) {
      // Credentials travel in the v2 INFO exchange: a v1 client has no way to log in.
      this.reject(WISP_CLOSE.authMissingCredentials, "Wisp password authentication needs Wisp v2");
    } else {
      this.sendFrame(encodeWispContinue(0, this.buffer));
    }
  }

  // ---- session → client ----

  send(ev: Event): void {
    const s = this.streams.get(ev.id);
    if (!s) return; // id 0, or a stream the client already closed
    switch (ev.ev) {
      case "data":
      case "data_from":
        return this.sendFrame(encodeWispData(ev.id, ev.data));
      case "credit":
        s.credited(ev.bytes);
        return this.afterUpload(s);
      case "connected":
        s.connected = true;
        if (this.negotiated.has(WISP_EXT.streamConfirmation)) {
          s.grant = this.allowance(s);
          s.sinceGrant = 0;
          this.sendFrame(encodeWispContinue(s.id, s.grant));
        }
        return;
      case "udp_bound": {
        s.connected = true;
        const early = s.early;
        s.early = [];
        for (const d of early) if (this.streams.get(s.id) === s) this.session.handle({ ok: true, req: { op: "send", id: s.id, data: d } });
        return;
      }
      case "closed":
        return this.drop(s, WISP_CLOSE.voluntary);
      case "error":
        return this.drop(s, wispCloseReason(ev.code));
      case "denied":
        return this.drop(s, WISP_CLOSE.blocked);
      default:
        return; // end, resolved, listening, accepted: never asked for
    }
  }

  // ---- client → session ----

  message(message: string | Buffer): void {
    if (this.session.closed) return;
    const d = typeof message === "string" ? null : decodeWispPacket(message);
    if (this.handshaking) {
      if (d?.ok && d.packet.type === "info" && d.packet.stream === 0) return this.clientInfo(d.packet);
      this.noInfo();
      if (this.session.closed || this.ws.readyState !== 1) return;
    }
    if (d === null) return this.session.noteError(0, "EBADREQ", "Wisp uses binary frames; got a text frame");
    if (!d.ok) {
      if (d.stream === null || d.stream === 0) return this.session.noteError(0, "EBADREQ", `Wisp: ${d.msg}`);
      return this.refuse(d.stream, "EBADREQ", `Wisp: ${d.msg}`);
    }
    const p = d.packet;
    switch (p.type) {
      case "connect":
        return this.connect(p);
      case "data":
        return this.data(p.stream, p.data);
      case "close": {
        const s = this.streams.get(p.stream);
        if (!s) return; // stream 0, or already gone: nothing to close
        this.forget(s);
        this.session.handle({ ok: true, req: { op: "close", id: s.id } });
        return;
      }
      case "continue":
      case "info":
        return; // only the server sends CONTINUE; INFO is a handshake packet
    }
  }

  protected override closing(): void {
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
    this.sendFrame(encodeWispContinue(0, this.buffer));
  }

  private reject(reason: number, why: string): void {
    clearTimeout(this.infoTimer);
    this.handshaking = false;
    this.sendFrame(encodeWispClose(0, reason));
    this.session.ctx.log.info("wisp handshake refused", { session: this.session.sid, why });
    this.ws.close(1008, why);
  }

  // ---- streams ----

  private connect(p: Extract<WispPacket, { type: "connect" }>): void {
    const id = p.stream;
    if (id === 0) return this.session.noteError(0, "EBADREQ", "Wisp CONNECT on stream 0 (reserved)");
    const old = this.streams.get(id);
    if (old) {
      // The client's view of this id is now ambiguous: end the old stream as well.
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
    const s = new WispStream(id, udp, this.buffer, this.window, (data) => this.session.handle({ ok: true, req: { op: "send", id, data } }));
    this.streams.set(id, s);
    this.session.handle({ ok: true, req: { op: udp ? "connect_udp" : "connect", id, addr: host, port: p.port } });
  }

  private data(id: number, data: Uint8Array): void {
    const s = this.streams.get(id);
    if (!s) {
      if (id === 0 || this.recentlyClosed.has(id)) return; // late DATA for a stream that just ended
      return this.refuse(id, "EBADID", `Wisp DATA for unknown stream ${id}`);
    }
    const max = this.session.maxMessageBytes;
    if (data.length + WISP_HEADER_BYTES > max)
      // Same rule as the wasmnet protocol: an oversized send ends that stream with ELIMIT.
      return this.refuse(id, "ELIMIT", `Wisp DATA of ${data.length} bytes exceeds max_message_bytes (${max})`);
    if (s.udp) {
      if (s.connected) return this.session.handle({ ok: true, req: { op: "send", id, data } });
      if (s.early.length < EARLY_DATAGRAMS) s.early.push(data);
      else this.session.ctx.metrics.udpDropped++;
      return;
    }
    s.received(data.length);
    if (data.length > 0) s.upload.offer(data);
    this.afterUpload(s);
  }

  /** After bytes arrived or credit came back: pause or resume the client, top up its credit. */
  private afterUpload(s: WispStream): void {
    if (this.streams.get(s.id) !== s) return;
    const held = s.upload.heldBytes;
    if (held > this.window && !this.overfull.has(s)) {
      this.overfull.add(s);
      this.holdInput(INPUT_PAUSE.held);
    } else if (held <= this.window / 2) this.relieve(s);
    this.maybeContinue(s);
  }

  /** Packets the client may send from now: the packet buffer, bounded by the byte window. */
  private allowance(s: WispStream): number {
    const room = s.upload.room;
    if (room <= 0) return 0;
    let r = this.buffer - s.packetsInFlight;
    if (s.avg > 0) r = Math.min(r, Math.max(1, Math.floor(room / s.avg)));
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
    this.sendFrame(encodeWispContinue(s.id, r));
  }

  // ---- helpers ----

  /** Refuse a stream id with CLOSE (reason from `code`), ending any stream under it; counted and logged by the session. */
  private refuse(id: number, code: ErrorCode, msg: string): void {
    const s = this.streams.get(id);
    if (s) {
      this.forget(s);
      this.session.handle({ ok: true, req: { op: "close", id } });
    }
    this.session.noteError(id, code, msg);
    this.sendFrame(encodeWispClose(id, wispCloseReason(code)));
  }

  /** The session ended a stream: tell the client with CLOSE. */
  private drop(s: WispStream, reason: number): void {
    this.forget(s);
    this.sendFrame(encodeWispClose(s.id, reason));
  }

  private forget(s: WispStream): void {
    if (this.streams.get(s.id) === s) this.streams.delete(s.id);
    s.drop();
    this.relieve(s);
    this.recentlyClosed.add(s.id);
    if (this.recentlyClosed.size > RECENTLY_CLOSED) this.recentlyClosed.delete(this.recentlyClosed.values().next().value!);
  }

  private relieve(s: WispStream): void {
    if (this.overfull.delete(s) && this.overfull.size === 0) this.releaseInput(INPUT_PAUSE.held);
  }
}
