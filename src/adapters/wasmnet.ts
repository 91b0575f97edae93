// The wasmnet protocol over a Bun ServerWebSocket: picks the codec per message (text = JSON,
// binary = binary framing) and answers in the framing of the latest request (SPEC §5.1).
import type { ServerWebSocket } from "bun";
import { decodeBinaryRequest, readId } from "../protocol/binary.ts";
import { HEADER_BYTES } from "../protocol/constants.ts";
import { decodeJsonRequest, encodeJsonEvent } from "../protocol/json.ts";
import { encodeBinaryEvent } from "../protocol/binary.ts";
import type { Event, Framing } from "../protocol/messages.ts";
import type { Session, Transport } from "../session/session.ts";
import type { WsAdapter } from "./wisp-transport.ts";
import type { WsproxyTarget } from "./wsproxy-transport.ts";

export interface WsData {
  remote: string;
  framing: Framing;
  session: Session | null;
  transport: WsTransport | null;
  /** Which protocol this socket speaks, chosen by path at upgrade (SPEC §3). Absent: wasmnet. */
  kind?: "wasmnet" | "wisp" | "wsproxy";
  /** Wisp: the version the client asked for (a Sec-WebSocket-Protocol selects v2). */
  wispVersion?: 1 | 2;
  /** wsproxy: the target from the path. */
  target?: WsproxyTarget;
  /** The Wisp or wsproxy adapter driving this socket. */
  adapter?: WsAdapter | null;
}

// One scratch buffer for every outgoing binary frame: ws.sendBinary copies the bytes before it
// returns (verified, also when it queues under backpressure), so a data event costs no fresh
// allocation, zero-fill or page faults — the largest CPU cost on the download path otherwise.
const SCRATCH_MAX = 4 * 1024 * 1024;
let scratch = new Uint8Array(256 * 1024);
const scratchAlloc = (n: number): Uint8Array => {
  if (n > SCRATCH_MAX) return new Uint8Array(n);
  if (scratch.length < n) scratch = new Uint8Array(Math.min(SCRATCH_MAX, Math.max(n, scratch.length * 2)));
  return scratch.subarray(0, n);
};

export class WsTransport implements Transport {
  constructor(private readonly ws: ServerWebSocket<WsData>) {}

  send(ev: Event): void {
    const ws = this.ws;
    const r = ws.data.framing === "binary" ? ws.sendBinary(encodeBinaryEvent(ev, scratchAlloc)) : ws.sendText(encodeJsonEvent(ev));
    // 0 means Bun dropped the message. Targets are paused long before Bun's limit, so this is
    // a bug or a hostile pattern; losing data silently is not an option, so end the session.
    if (r === 0 && ws.readyState === 1) ws.close(1011, "outgoing buffer limit reached");
  }
  buffered(): number {
    return this.ws.getBufferedAmount();
  }
  pauseInput(): void {
    this.ws.pause();
  }
  resumeInput(): void {
    if (this.ws.readyState === 1) this.ws.resume();
  }
}

/** Decode one WebSocket message and hand it to the session. */
export function handleMessage(ws: ServerWebSocket<WsData>, message: string | Buffer, maxMessageBytes: number): void {
  const session = ws.data.session;
  if (!session) return;
  if (typeof message === "string") {
    ws.data.framing = "json";
    // The cap is in bytes: a UTF-8 character can take up to 3 bytes per UTF-16 unit.
    const bytes = message.length * 3 > maxMessageBytes ? Buffer.byteLength(message, "utf8") : message.length;
    if (bytes > maxMessageBytes)
      return session.handle({ ok: false, id: 0, code: "ELIMIT", msg: `message of ${bytes} bytes exceeds max_message_bytes (${maxMessageBytes})` });
    session.handle(decodeJsonRequest(message));
  } else {
    ws.data.framing = "binary";
    if (message.length > maxMessageBytes) {
      const id = message.length >= HEADER_BYTES ? Math.max(0, readId(message)) : 0;
      return session.handle({ ok: false, id, code: "ELIMIT", msg: `message of ${message.length} bytes exceeds max_message_bytes (${maxMessageBytes})` });
    }
    session.handle(decodeBinaryRequest(message));
  }
}
