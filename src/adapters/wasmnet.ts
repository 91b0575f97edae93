// The wasmnet protocol (docs/protocol.md) as an adapter: a text frame is a JSON request, a
// binary frame a binary one, and events go out in the framing of the latest request.
import type { ServerWebSocket } from "bun";
import { decodeBinaryRequest, encodeBinaryEvent, readId, type Alloc } from "../protocol/binary.ts";
import { HEADER_BYTES } from "../protocol/constants.ts";
import { decodeJsonRequest, encodeJsonEvent, readJsonId } from "../protocol/json.ts";
import type { Event, Framing } from "../protocol/messages.ts";
import type { SessionContext } from "../session/context.ts";
import { WsAdapter, type AdmittedClient, type WsData } from "./base.ts";

// One scratch buffer for every outgoing binary frame: ws.sendBinary copies the bytes before it
// returns (verified, also when it queues under backpressure), so a data event costs no fresh
// allocation, zero-fill or page faults — the largest CPU cost on the download path otherwise.
const SCRATCH_MAX = 4 * 1024 * 1024;
let scratch = new Uint8Array(256 * 1024);
const scratchAlloc: Alloc = (n) => {
  if (n > SCRATCH_MAX) return new Uint8Array(n);
  if (scratch.length < n) scratch = new Uint8Array(Math.min(SCRATCH_MAX, Math.max(n, scratch.length * 2)));
  return scratch.subarray(0, n);
};

export class WasmnetAdapter extends WsAdapter {
  private framing: Framing = "json";

  constructor(ws: ServerWebSocket<WsData>, ctx: SessionContext, who: AdmittedClient) {
    super(ws, ctx, who, { protocol: "wasmnet" });
  }

  send(ev: Event): void {
    this.sendFrame(this.framing === "binary" ? encodeBinaryEvent(ev, scratchAlloc) : encodeJsonEvent(ev));
  }

  protected receive(message: string | Buffer): void {
    const session = this.session;
    const max = session.maxMessageBytes;
    if (typeof message === "string") {
      this.framing = "json";
      // The cap is in bytes: a UTF-8 character can take up to 3 bytes per UTF-16 unit.
      const bytes = message.length * 3 > max ? Buffer.byteLength(message, "utf8") : message.length;
      if (bytes > max) return session.handle({ ok: false, id: readJsonId(message), code: "ELIMIT", msg: `message of ${bytes} bytes exceeds max_message_bytes (${max})` });
      session.handle(decodeJsonRequest(message));
    } else {
      this.framing = "binary";
      if (message.length > max) {
        const id = message.length >= HEADER_BYTES ? Math.max(0, readId(message)) : 0;
        return session.handle({ ok: false, id, code: "ELIMIT", msg: `message of ${message.length} bytes exceeds max_message_bytes (${max})` });
      }
      session.handle(decodeBinaryRequest(message));
    }
  }
}
