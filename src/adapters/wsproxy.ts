// wsproxy as an adapter: one WebSocket carries one TCP connection's bytes (binary frames both
// ways), run through the same Session as the wasmnet protocol (policy, limits, bandwidth,
// metrics, audit). The target comes from the path, `/<prefix>/HOST:PORT` (src/server/routes.ts).
//
// Upload backpressure: the session runs with byte credit (`flow`); frames beyond the window wait
// in an UploadWindow and the WebSocket is not read until the target has taken them. With one
// stream per WebSocket, pausing it stalls nothing else.
import type { ServerWebSocket } from "bun";
import type { ErrorCode } from "../protocol/constants.ts";
import type { Event } from "../protocol/messages.ts";
import type { SessionContext } from "../session/context.ts";
import { closeReason, INPUT_PAUSE, UploadWindow, WsAdapter, type AdmittedClient, type WsData } from "./base.ts";

const utf8 = new TextEncoder();

/** The session id of a wsproxy socket's single stream. */
export const WSPROXY_ID = 1;
/** Close code for a destination the policy refused (application range). */
export const WSPROXY_DENIED = 4003;

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

export class WsproxyAdapter extends WsAdapter {
  private readonly upload: UploadWindow;
  private done = false;

  constructor(ws: ServerWebSocket<WsData>, ctx: SessionContext, target: { host: string; port: number }, who: AdmittedClient) {
    super(ws, ctx, who, { flow: true, protocol: "wsproxy" });
    this.upload = new UploadWindow(this.session.window, (data) => this.session.handle({ ok: true, req: { op: "send", id: WSPROXY_ID, data } }));
    this.session.handle({ ok: true, req: { op: "connect", id: WSPROXY_ID, addr: target.host, port: target.port } });
  }

  send(ev: Event): void {
    if (ev.id !== WSPROXY_ID || this.done) return;
    switch (ev.ev) {
      case "data":
        return this.sendFrame(ev.data);
      case "credit":
        this.upload.credited(ev.bytes);
        if (this.upload.heldBytes === 0) this.releaseInput(INPUT_PAUSE.held);
        return;
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

  protected receive(message: string | Buffer): void {
    if (this.done) return;
    const data = typeof message === "string" ? utf8.encode(message) : message;
    if (data.length === 0) return;
    const max = this.session.maxMessageBytes;
    if (data.length > max) return this.session.handle({ ok: false, id: WSPROXY_ID, code: "ELIMIT", msg: `frame of ${data.length} bytes exceeds max_message_bytes (${max})` });
    this.upload.offer(data);
    if (this.upload.heldBytes > 0) this.holdInput(INPUT_PAUSE.held);
  }

  /** The browser closed: let the session flush what the target has not taken yet, then FIN. */
  protected override closing(): void {
    if (this.done) return;
    this.done = true;
    this.session.handle({ ok: true, req: { op: "close", id: WSPROXY_ID } });
  }

  private end(code: number, why: string): void {
    this.done = true;
    this.upload.clear();
    if (this.ws.readyState === 1) this.ws.close(code, closeReason(why));
  }
}
