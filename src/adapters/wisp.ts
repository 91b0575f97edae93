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
//
// Authentication (v2 extensions 0x02 password, 0x03 Ed25519 key): when configured, every client
// must log in in its INFO; v1 clients and clients that skip INFO are refused. A login from an
// anonymous session becomes the session's identity (`wisp:<user>`, with the user's profile)
// before anything is opened; on a session that came with a token, the token's identity stays
// (the Wisp login is still checked) — see docs/protocol.md#wisp.
import type { ServerWebSocket } from "bun";
import { MAX_DATAGRAM_BYTES, type ErrorCode } from "../protocol/constants.ts";
import type { Event } from "../protocol/messages.ts";
import {
  decodeWispKeyClient,
  decodeWispPacket,
  decodeWispPasswordClient,
  encodeWispClose,
  encodeWispContinue,
  encodeWispData,
  encodeWispKeyServer,
  encodeWispMotd,
  encodeWispPacket,
  encodeWispPasswordServer,
  WISP_CLOSE,
  WISP_EXT,
  WISP_HEADER_BYTES,
  WISP_KEY_ALG,
  WISP_KEY_CHALLENGE_BYTES,
  WISP_STREAM,
  wispCloseReason,
  type WispExtension,
  type WispKeyAnswer,
  type WispPacket,
} from "../protocol/wisp.ts";
import type { SessionContext } from "../session/context.ts";
import { closeReason, INPUT_PAUSE, udpSocketEnds, UploadWindow, WsAdapter, type AdmittedClient, type WsData } from "./base.ts";

/** Packets each TCP stream may have in flight (the CONTINUE buffer size; wisp-js and epoxy use 128). */
export const WISP_BUFFER_PACKETS = 128;
/** v2: how long the server waits for the client's INFO before carrying on as version 1. */
export const WISP_INFO_TIMEOUT_MS = 5000;
/** Ids of recently closed streams remembered, so late DATA for them is dropped quietly. */
const RECENTLY_CLOSED = 1024;
/** UDP datagrams kept per stream while its socket is being bound; later ones are dropped (UDP may). */
const EARLY_DATAGRAMS = 64;
/** Packets a client may send while its login is decided (the socket is paused meanwhile). */
const PACKETS_DURING_LOGIN = 256;

/** Who logged in, and the profile its sessions run under (null: the top-level policy). */
export interface WispLogin {
  user: string;
  profile: string | null;
}

export interface WispConfig {
  version: 1 | 2;
  /** Sent to v2 clients through the MOTD extension. */
  motd?: string | null;
  /** Password auth (v2 extension 0x02): the login, or null for a wrong user or password. Off when absent. */
  passwordAuth?: ((user: string, password: string) => WispLogin | null) | null;
  /** Key auth (v2 extension 0x03): the login whose key signed `challenge`, or null. Off when absent. */
  keyAuth?: ((answer: WispKeyAnswer, challenge: Uint8Array) => Promise<WispLogin | null>) | null;
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
  /** UDP: datagrams the client sent before the socket was bound, and their bytes. */
  early: Uint8Array[] = [];
  earlyBytes = 0;

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
    this.earlyBytes = 0;
  }
}

export class WispAdapter extends WsAdapter {
  private readonly streams = new Map<number, WispStream>();
  private readonly recentlyClosed = new Set<number>();
  private readonly buffer: number;
  /** v2 handshake: waiting for the client's INFO. Packets are not processed meanwhile. */
  private handshaking: boolean;
  private infoTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly offered: WispExtension[] = [];
  private negotiated = new Set<number>();
  private version: 1 | 2 = 1;
  /** Key auth: the random challenge offered in our INFO. */
  private readonly challenge: Uint8Array | null;
  /** While a login is decided: the client's messages, handled once it is. */
  private waiting: (string | Buffer)[] | null = null;
  /** Streams holding more than a window: the client is not read while any is. */
  private readonly overfull = new Set<WispStream>();

  constructor(
    ws: ServerWebSocket<WsData>,
    ctx: SessionContext,
    private readonly config: WispConfig,
    who: AdmittedClient,
  ) {
    super(ws, ctx, who, { flow: true, protocol: "wisp" });
    this.buffer = Math.max(1, config.bufferPackets ?? WISP_BUFFER_PACKETS);
    this.handshaking = config.version === 2;
    this.challenge = config.keyAuth ? crypto.getRandomValues(new Uint8Array(WISP_KEY_CHALLENGE_BYTES)) : null;
    if (config.version === 2) {
      // Each method is "required" only when it is the only one: with both, either will do.
      const only = !(config.passwordAuth && config.keyAuth);
      if (config.udp !== false) this.offered.push({ id: WISP_EXT.udp, payload: new Uint8Array(0) });
      if (config.passwordAuth) this.offered.push({ id: WISP_EXT.passwordAuth, payload: encodeWispPasswordServer(only) });
      if (this.challenge)
        this.offered.push({ id: WISP_EXT.keyAuth, payload: encodeWispKeyServer({ required: only, algorithms: WISP_KEY_ALG.ed25519, challenge: this.challenge }) });
      if (config.motd) this.offered.push({ id: WISP_EXT.motd, payload: encodeWispMotd(config.motd) });
      this.offered.push({ id: WISP_EXT.streamConfirmation, payload: new Uint8Array(0) });
      // wisp-js (and the v2 spec) expect INFO first, then CONTINUE once the client's INFO is in.
      this.sendFrame(encodeWispPacket({ type: "info", stream: 0, major: 2, minor: 0, extensions: this.offered }));
      this.infoTimer = setTimeout(() => this.noInfo(), WISP_INFO_TIMEOUT_MS);
    } else if (this.loginRequired) {
      // Credentials travel in the v2 INFO exchange: a v1 client has no way to log in.
      this.reject(WISP_CLOSE.authMissingCredentials, "Wisp authentication needs Wisp v2");
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
        s.earlyBytes = 0;
        for (const d of early) if (this.streams.get(s.id) === s) this.session.handle({ ok: true, req: { op: "send", id: s.id, data: d } });
        return;
      }
      case "closed":
        return this.drop(s, WISP_CLOSE.voluntary);
      case "error":
      case "denied":
        // On an open UDP stream most answers are about one datagram (the session counted it; Wisp
        // has no way to say so): the stream and the session's socket stay.
        if (s.udp && s.connected && !udpSocketEnds(ev)) return;
        return this.drop(s, ev.ev === "error" ? wispCloseReason(ev.code) : WISP_CLOSE.blocked);
      default:
        return; // end, resolved, listening, accepted: never asked for
    }
  }

  // ---- client → session ----

  protected receive(message: string | Buffer): void {
    if (this.session.closed) return;
    if (this.waiting !== null) {
      // A paused WebSocket still delivers what it had decoded: keep it, in order, for later.
      if (this.waiting.length >= PACKETS_DURING_LOGIN) return this.reject(WISP_CLOSE.throttled, "too many packets before the login was decided");
      this.waiting.push(message);
      return;
    }
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
    this.waiting = null;
    this.streams.clear();
    this.overfull.clear();
  }

  // ---- handshake ----

  private get loginRequired(): boolean {
    return Boolean(this.config.passwordAuth || this.config.keyAuth);
  }

  private clientInfo(p: Extract<WispPacket, { type: "info" }>): void {
    const theirs = new Map(p.extensions.map((e) => [e.id, e] as const));
    const negotiate = () => {
      for (const e of this.offered) if (theirs.has(e.id)) this.negotiated.add(e.id);
      this.finishHandshake(p.major >= 2 ? 2 : 1);
    };
    if (!this.loginRequired) return negotiate();
    // Checking a key and counting the new identity take a moment: nothing from the client is
    // handled (and the socket is not read) until the login is decided.
    clearTimeout(this.infoTimer);
    this.waiting = [];
    this.holdInput(INPUT_PAUSE.login);
    void this.logIn(theirs).then(
      (ok) => {
        if (!ok || this.session.closed || this.ws.readyState !== 1) return;
        negotiate();
        const waiting = this.waiting ?? [];
        this.waiting = null;
        this.releaseInput(INPUT_PAUSE.login);
        for (const m of waiting) this.message(m);
      },
      (e) => {
        this.session.ctx.log.error("wisp login failed", { session: this.session.sid, error: (e as Error).message });
        this.reject(WISP_CLOSE.unknown, "login could not be decided");
      },
    );
  }

  /** Check the client's credentials and put the session under the login; false once refused. */
  private async logIn(theirs: Map<number, WispExtension>): Promise<boolean> {
    const { passwordAuth, keyAuth } = this.config;
    const pw = passwordAuth ? theirs.get(WISP_EXT.passwordAuth) : undefined;
    const key = keyAuth && this.challenge ? theirs.get(WISP_EXT.keyAuth) : undefined;
    let login: WispLogin | null;
    if (pw) {
      const parsed = decodeWispPasswordClient(pw.payload);
      if (!parsed) return this.refuseLogin(WISP_CLOSE.authMissingCredentials, "Wisp password credentials unreadable");
      login = passwordAuth!(parsed.user, parsed.password);
      if (!login) return this.refuseLogin(WISP_CLOSE.authBadPassword, "Wisp password rejected");
    } else if (key) {
      const answer = decodeWispKeyClient(key.payload);
      if (!answer) return this.refuseLogin(WISP_CLOSE.authMissingCredentials, "Wisp key credentials unreadable");
      login = await keyAuth!(answer, this.challenge!);
      if (this.session.closed) return false;
      if (!login) return this.refuseLogin(WISP_CLOSE.authBadSignature, "Wisp key signature rejected");
    } else return this.refuseLogin(WISP_CLOSE.authMissingCredentials, "Wisp authentication required");

    const current = this.session.identity;
    if (current.name !== null) {
      // A token already named the client. Its identity stays: one session, one identity, and a
      // Wisp login can then never reach beyond what the token alone is given.
      this.session.ctx.log.info("wisp login on a session with a token: the token's identity stays", { session: this.session.sid, identity: current.name, wisp_user: login.user });
      return true;
    }
    const refused = await this.session.bindIdentity({ key: `wisp:${login.user}`, name: login.user, profile: login.profile, allow: null });
    if (this.session.closed) return false;
    if (refused !== null) return this.refuseLogin(WISP_CLOSE.throttled, refused);
    return true;
  }

  private refuseLogin(reason: number, why: string): false {
    this.reject(reason, why);
    return false;
  }

  /** v2 without the client's INFO (it timed out, or the client went straight to streams). */
  private noInfo(): void {
    if (!this.handshaking) return;
    // Never a way around authentication.
    if (this.loginRequired) return this.reject(WISP_CLOSE.authMissingCredentials, "Wisp authentication required");
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
    this.waiting = null;
    this.sendFrame(encodeWispClose(0, reason));
    this.session.ctx.log.info("wisp handshake refused", { session: this.session.sid, remote: this.session.remote, why });
    this.ws.close(1008, closeReason(why));
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
    if (s.udp) {
      // Too large for UDP or for a message: that datagram is dropped and counted, the stream
      // goes on (Wisp has no way to report one datagram's failure; docs/protocol.md#udp).
      if (data.length > MAX_DATAGRAM_BYTES) return this.session.noteError(id, "EBADREQ", `Wisp UDP datagram of ${data.length} bytes exceeds ${MAX_DATAGRAM_BYTES}`);
      if (data.length + WISP_HEADER_BYTES > max) return this.session.noteError(id, "ELIMIT", `Wisp DATA of ${data.length} bytes exceeds max_message_bytes (${max})`);
      if (s.connected) return this.session.handle({ ok: true, req: { op: "send", id, data } });
      // Before the socket is bound: a few, at most a window's worth; later ones are dropped (UDP may).
      if (s.early.length < EARLY_DATAGRAMS && s.earlyBytes + data.length <= this.window) {
        s.early.push(data);
        s.earlyBytes += data.length;
      } else this.session.ctx.metrics.udpDropped("unbound");
      return;
    }
    if (data.length + WISP_HEADER_BYTES > max)
      // Same rule as the wasmnet protocol: an oversized send ends that stream with ELIMIT.
      return this.refuse(id, "ELIMIT", `Wisp DATA of ${data.length} bytes exceeds max_message_bytes (${max})`);
    s.received(data.length);
    if (data.length > 0) s.upload.offer(data);
    this.afterUpload(s);
  }

  /** After bytes arrived or credit came back: pause or resume the client, top up its credit. */
  private afterUpload(s: WispStream): void {
    if (this.streams.get(s.id) !== s) return;
    const held = s.upload.heldBytes;
    // Packets are counted too: each costs an entry in `sizes`, and a client past its packet
    // credit could send a window's worth of 1-byte packets.
    const packets = s.packetsInFlight;
    if ((held > this.window || packets > this.maxPackets) && !this.overfull.has(s)) {
      this.overfull.add(s);
      this.holdInput(INPUT_PAUSE.held);
    } else if (held <= this.window / 2 && packets <= this.maxPackets / 2) this.relieve(s);
    this.maybeContinue(s);
  }

  /** Packets in flight on one stream past which the client is not read (a client within its credit never gets there). */
  private get maxPackets(): number {
    return Math.max(1024, 8 * this.buffer);
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

  /** The session's byte window per stream (a login's profile may size it differently). */
  private get window(): number {
    return this.session.window;
  }

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
