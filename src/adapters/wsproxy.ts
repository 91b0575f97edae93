// wsproxy as an adapter: one WebSocket carries one TCP connection's bytes (binary frames both
// ways), run through the same Session as the wasmnet protocol (policy, limits, bandwidth,
// metrics, audit). The target comes from the path, `/<prefix>/HOST:PORT`.
//
// Upload backpressure: the session runs with byte credit (`hello` with `flow`); frames beyond
// the window are held here and the WebSocket is paused until the target has taken enough.
// With one stream per WebSocket, pausing it stalls nothing else.
import type { ServerWebSocket } from "bun";
import type { ErrorCode } from "../protocol/constants.ts";
import type { Event } from "../protocol/messages.ts";
import { Session, type Transport } from "../session/session.ts";
import type { SessionContext } from "../session/context.ts";
import type { WsAdapter } from "./wisp-transport.ts";
import { GatedTransport, PAUSE_HELD } from "./gated-transport.ts";
import type { WsData } from "./ws-transport.ts";

/** The session id of a wsproxy socket's single stream. */
export const WSPROXY_ID = 1;

export interface WsproxyTarget {
  host: string;
  port: number;
}

/** `HOST:PORT` (IPv6 in brackets, percent-encoding allowed) from one path segment; null if malformed. */
export function parseHostPort(segment: string): WsproxyTarget | null {
  let s: string;
  try {
    s = decodeURIComponent(segment);
  } catch {
    return null;
  }
  let host: string;
  let port: string;
  if (s.startsWith("[")) {
    const end = s.indexOf("]");
    if (end < 0 || s[end + 1] !== ":") return null;
    host = s.slice(1, end);
    port = s.slice(end + 2);
    if (!host.includes(":")) return null;
  } else {
    const i = s.lastIndexOf(":");
    if (i <= 0) return null;
    host = s.slice(0, i);
    port = s.slice(i + 1);
    if (host.includes(":")) return null; // unbracketed IPv6 is ambiguous
  }
  if (!/^[0-9]{1,5}$/.test(port)) return null;
  const p = Number(port);
  if (p < 1 || p > 65535) return null;
  if (host.length === 0 || host.length > 253 || /[\s/\\?#@%\x00-\x1f\x7f]/.test(host)) return null;
  return { host, port: p };
}

/** WebSocket close codes for the ways the stream can end. */
export function wsproxyCloseCode(code: ErrorCode): number {
  switch (code) {
    case "ECONNREFUSED":
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
    case "ENOTFOUND":
    case "ETLS":
      return 1014; // bad gateway
    case "EINTERNAL":
      return 1011;
    default:
      return 1008; // ELIMIT, EBADREQ, …: policy violation
  }
}
export const WSPROXY_DENIED = 4003;

const utf8 = new TextEncoder();

/** Close reasons are limited to 123 bytes of UTF-8. */
function reason(s: string): string {
  const b = utf8.encode(s);
  if (b.length <= 123) return s;
  return new TextDecoder().decode(b.subarray(0, 120)).replace(/\uFFFD$/, "") + "...";
}

export class WsproxyTransport extends GatedTransport implements Transport, WsAdapter {
  readonly session: Session;
  private window = 0;
  private handed = 0;
  private held: Uint8Array[] = [];
  private done = false;

  constructor(
    ws: ServerWebSocket<WsData>,
    ctx: SessionContext,
    target: WsproxyTarget,
  ) {
    super(ws);
    this.session = new Session(ctx, this, ws.data.remote);
    this.session.handle({ ok: true, req: { op: "hello", id: 0, version: 2, features: ["flow"] } });
    if (this.window <= 0) this.window = ctx.policy.limits.streamBufferBytes;
    this.session.handle({ ok: true, req: { op: "connect", id: WSPROXY_ID, addr: target.host, port: target.port } });
  }

  send(ev: Event): void {
    if (ev.ev === "hello") {
      this.window = ev.window;
      return;
    }
    if (ev.id !== WSPROXY_ID || this.done) return;
    switch (ev.ev) {
      case "data":
        if (this.ws.sendBinary(ev.data) === 0 && this.ws.readyState === 1) this.end(1011, "outgoing buffer limit reached");
        return;
      case "credit":
        this.handed -= ev.bytes;
        return this.pump();
      case "closed":
        return this.end(1000, "target closed");
      case "error":
        return this.end(wsproxyCloseCode(ev.code), `${ev.code}: ${ev.msg}`);
      case "denied":
        return this.end(WSPROXY_DENIED, `denied: ${ev.msg}`);
      default:
        return;
    }
  }

  message(message: string | Buffer): void {
    if (this.done) return;
    const data = typeof message === "string" ? utf8.encode(message) : message;
    if (data.length === 0) return;
    const max = this.session.ctx.policy.limits.maxMessageBytes;
    if (data.length > max) {
      this.session.handle({ ok: false, id: WSPROXY_ID, code: "ELIMIT", msg: `frame of ${data.length} bytes exceeds max_message_bytes (${max})` });
      return;
    }
    if (this.held.length === 0 && this.handed + data.length <= this.window) {
      this.handed += data.length;
      this.session.handle({ ok: true, req: { op: "send", id: WSPROXY_ID, data } });
      return;
    }
    this.held.push(data);
    this.pause(PAUSE_HELD);
    this.pump();
  }

  /** The browser closed: let the session flush what the target has not taken yet, then FIN. */
  closing(): void {
    if (this.done) return;
    this.done = true;
    this.session.handle({ ok: true, req: { op: "close", id: WSPROXY_ID } });
  }

  private pumping = false;

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.held.length > 0 && this.handed < this.window && !this.done) {
        const head = this.held[0]!;
        const room = this.window - this.handed;
        const chunk = head.length <= room ? head : head.subarray(0, room);
        if (chunk === head) this.held.shift();
        else this.held[0] = head.subarray(room);
        this.handed += chunk.length;
        this.session.handle({ ok: true, req: { op: "send", id: WSPROXY_ID, data: chunk } });
      }
    } finally {
      this.pumping = false;
    }
    if (this.held.length === 0) this.unpause(PAUSE_HELD);
  }

  private end(code: number, why: string): void {
    this.done = true;
    this.held = [];
    if (this.ws.readyState === 1) this.ws.close(code, reason(why));
  }

}

export function openWsproxy(ws: ServerWebSocket<WsData>, ctx: SessionContext, target: WsproxyTarget): WsproxyTransport {
  const t = new WsproxyTransport(ws, ctx, target);
  ws.data.session = t.session;
  ws.data.adapter = t;
  return t;
}
