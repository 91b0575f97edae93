// The protocol adapter base: what every protocol spoken over a WebSocket shares, so that an
// adapter is only its codec and its mapping onto the session's requests and events
// (docs/architecture.md#adding-a-protocol-adapter).
//
// - the Session, created with the adapter as its Transport;
// - one way to send a frame, with the one guard against Bun dropping it (1011);
// - the reasons reading the client is paused (bandwidth budget, bytes held beyond a window,
//   replies the client does not read);
// - UploadWindow: client bytes beyond a stream's byte window wait here and go on as credit
//   comes back, for protocols whose own flow control is not the session's byte credit.
import type { ServerWebSocket } from "bun";
import type { Event } from "../protocol/messages.ts";
import type { SessionContext } from "../session/context.ts";
import { Session, type SessionOptions } from "../session/session.ts";
import type { Transport } from "../session/transport.ts";

/** What admission learnt about a client before its upgrade. */
export type AdmittedClient = Pick<SessionOptions, "remote" | "identity" | "lease">;

/** Per-WebSocket data, set at upgrade. */
export interface WsData {
  /** The client's address (after trusted proxies). */
  remote: string;
  /** Builds the adapter for this socket's protocol; chosen by path at upgrade, run in `open`. */
  start: (ws: ServerWebSocket<WsData>) => WsAdapter;
  adapter: WsAdapter | null;
}

/** Why the adapter stopped reading its client. */
export const INPUT_PAUSE = {
  /** The session's bandwidth budget is in debt. */
  bandwidth: 1,
  /** More is held beyond a stream's window than the adapter accepts. */
  held: 2,
  /** A login (Wisp authentication) is being decided. */
  login: 4,
  /** The client does not read what it is sent: more than REPLY_LIMIT_WATERMARKS × the high watermark is queued toward it. */
  clientFull: 8,
} as const;

/**
 * Replies (answers to requests, not target data, which the session pauses at the high watermark)
 * may queue toward the client up to this many high watermarks; past it the client is not read
 * until it has read down to the low watermark. Every request is answered, so a client that sends
 * requests and never reads would otherwise fill the server up to Bun's backpressure limit.
 */
export const REPLY_LIMIT_WATERMARKS = 4;
/** Held chunks under this size are copied into a shared staging buffer (UploadWindow). */
const SMALL_CHUNK_BYTES = 4096;
/** One staging buffer: small chunks copied together until it is full. */
const STAGING_BYTES = 16 * 1024;
/** How often a full client's queue is looked at again: Bun may fire `drain` only once. */
const DRAIN_RECHECK_MS = 5;

const utf8 = new TextEncoder();

/**
 * Whether an answer on an open (bound) UDP socket ends it, per docs/protocol.md#which-answers-end-an-id:
 * `closed`, the idle timeout's `ETIMEDOUT` and the daily quota's `ELIMIT` (#limits: "its streams end")
 * do; any other `error` or `denied` was about one datagram and the socket stays. The two are told
 * apart from per-datagram errors of the same code by the setting their message names.
 */
export function udpSocketEnds(ev: Extract<Event, { ev: "closed" | "error" | "denied" }>): boolean {
  if (ev.ev === "closed") return true;
  if (ev.ev === "denied") return false;
  if (ev.code === "ETIMEDOUT") return ev.msg.includes("(idle_timeout_secs)");
  if (ev.code === "ELIMIT") return ev.msg.includes("(max_bytes_per_day)");
  return false;
}

/** A WebSocket close reason: at most 123 bytes of UTF-8. */
export function closeReason(s: string): string {
  const b = utf8.encode(s);
  if (b.length <= 123) return s;
  return new TextDecoder().decode(b.subarray(0, 120)).replace(/\uFFFD$/, "") + "...";
}

export abstract class WsAdapter implements Transport {
  readonly session: Session;
  private inputPause = 0;
  /** Queued bytes toward the client past which it is not read (REPLY_LIMIT_WATERMARKS). */
  private readonly replyLimit: number;
  private readonly lowWatermark: number;
  private drainCheck: ReturnType<typeof setTimeout> | undefined;
  /**
   * While the client is held for not reading: messages Bun had already decoded (a paused
   * WebSocket still delivers them), handled once it reads again. Handling them now would queue
   * their replies regardless: one 20-byte request can ask for a 1 MiB reply.
   */
  private unread: (string | Buffer)[] | null = null;

  constructor(
    protected readonly ws: ServerWebSocket<WsData>,
    ctx: SessionContext,
    /** Who the client is, from admission: address, identity, its unit of the session limits. */
    who: AdmittedClient,
    /** Protocol features the session runs with from the start. */
    features: Pick<SessionOptions, "flow" | "halfClose" | "protocol"> = {},
  ) {
    this.session = new Session(ctx, this, { ...who, ...features });
    this.replyLimit = REPLY_LIMIT_WATERMARKS * ctx.highWatermark;
    this.lowWatermark = ctx.lowWatermark;
  }

  /** Session → client, in this protocol. */
  abstract send(ev: Event): void;
  /** Client → session: one WebSocket message, in this protocol. */
  protected abstract receive(message: string | Buffer): void;
  /** The WebSocket is closing; the session is destroyed right after. */
  protected closing(): void {}

  /** The WebSocket closed: the adapter, then the session, let go of everything. */
  /** Client → session: one WebSocket message. */
  message(message: string | Buffer): void {
    if (this.unread !== null) this.unread.push(message);
    else this.receive(message);
  }

  closed(): void {
    clearTimeout(this.drainCheck);
    this.drainCheck = undefined;
    this.unread = null;
    this.closing();
    this.session.destroy();
  }

  /** The WebSocket drained some of what it had queued. */
  drained(): void {
    this.session.drained();
    this.clientRead();
  }

  buffered(): number {
    return this.ws.getBufferedAmount();
  }
  pauseInput(): void {
    this.holdInput(INPUT_PAUSE.bandwidth);
  }
  resumeInput(): void {
    this.releaseInput(INPUT_PAUSE.bandwidth);
  }

  protected holdInput(reason: number): void {
    if (this.inputPause === 0) this.ws.pause();
    this.inputPause |= reason;
  }

  protected releaseInput(reason: number): void {
    if (!(this.inputPause & reason)) return;
    this.inputPause &= ~reason;
    if (this.inputPause === 0 && this.ws.readyState === 1) this.ws.resume();
  }

  /**
   * One frame toward the client. Bun drops a message (returns 0) only past its backpressure
   * limit, which targets are paused long before (docs/bun.md#websocket-send-results-and-backpressurelimit): reaching it
   * is a bug or a hostile pattern, and losing data silently is not an option, so the session ends.
   */
  protected sendFrame(frame: Uint8Array | string): void {
    const ws = this.ws;
    if (ws.readyState !== 1) return;
    const r = typeof frame === "string" ? ws.sendText(frame) : ws.sendBinary(frame);
    if (r === 0) return ws.close(1011, "outgoing buffer limit reached");
    // -1: queued in Bun's buffer. Only then can the queue have grown; it is measured only then.
    if (r === -1 && this.unread === null && ws.getBufferedAmount() > this.replyLimit) {
      this.unread = [];
      this.holdInput(INPUT_PAUSE.clientFull);
    }
  }

  /** A client held for not reading is read again once its queue is down to the low watermark. */
  private clientRead(): void {
    if (this.unread === null || this.ws.readyState !== 1 || this.session.closed) return;
    if (this.ws.getBufferedAmount() > this.lowWatermark) {
      this.drainCheck ??= setTimeout(() => {
        this.drainCheck = undefined;
        this.clientRead();
      }, DRAIN_RECHECK_MS);
      return;
    }
    const unread = this.unread;
    this.unread = null;
    // Replies that waited first (they answer older requests), then the messages, in order;
    // should the replies fill the client again, the rest waits again, still in order.
    this.repliesWanted();
    for (let i = 0; i < unread.length; i++) {
      if (this.unread !== null) {
        (this.unread as (string | Buffer)[]).push(...unread.slice(i));
        return;
      }
      this.receive(unread[i]!);
    }
    if (this.unread === null) this.releaseInput(INPUT_PAUSE.clientFull);
  }

  /** True while the client is held for not reading: replies that can wait should. */
  protected get repliesHeld(): boolean {
    return this.unread !== null;
  }

  /** The client reads again: send the replies that waited for it (see `repliesHeld`). */
  protected repliesWanted(): void {}
}

/**
 * One stream's upload window: bytes the client sent beyond the session's byte window wait
 * here, oldest first, and are handed on as the session returns credit. Never more than
 * `window` bytes are with the session at once.
 */
export class UploadWindow {
  /** Bytes handed to the session and not credited back yet (≤ window). */
  private handed = 0;
  private held: Uint8Array[] = [];
  private _heldBytes = 0;
  private pumping = false;
  /**
   * The newest held chunk when it is a view of a staging buffer that small chunks are copied
   * into: a held view costs far more than a byte (1-byte Wisp packets would otherwise hold a
   * million views per window), and a small view keeps its whole WebSocket message alive.
   * Bytes past this view's end were never handed on, so appending there is safe.
   */
  private staging: Uint8Array | null = null;

  constructor(
    private readonly window: number,
    /** Hands bytes to the session (a `send` request). */
    private readonly forward: (chunk: Uint8Array) => void,
  ) {}

  /** Bytes waiting here beyond the window. */
  get heldBytes(): number {
    return this._heldBytes;
  }
  /** Chunks waiting here (small ones share a staging buffer). */
  get heldChunks(): number {
    return this.held.length;
  }
  /** Handed plus held: what the client has sent that the target has not taken. */
  get inFlight(): number {
    return this.handed + this._heldBytes;
  }
  get room(): number {
    return this.window - this.inFlight;
  }

  offer(data: Uint8Array): void {
    if (this.held.length === 0 && this.handed + data.length <= this.window) {
      this.handed += data.length;
      this.forward(data);
      return;
    }
    this.hold(data);
    this._heldBytes += data.length;
    this.pump();
  }

  private hold(data: Uint8Array): void {
    if (data.length >= SMALL_CHUNK_BYTES) {
      this.held.push(data);
      return;
    }
    const last = this.held.length - 1;
    const tail = this.staging;
    if (tail !== null && last >= 0 && this.held[last] === tail && tail.byteOffset + tail.length + data.length <= tail.buffer.byteLength) {
      const grown = new Uint8Array(tail.buffer, tail.byteOffset, tail.length + data.length);
      grown.set(data, tail.length);
      this.held[last] = this.staging = grown;
      return;
    }
    const fresh = new Uint8Array(new ArrayBuffer(STAGING_BYTES), 0, data.length);
    fresh.set(data);
    this.held.push((this.staging = fresh));
  }

  /** The session credited `bytes` (the target took them). */
  credited(bytes: number): void {
    this.handed -= bytes;
    this.pump();
  }

  /**
   * Takes back up to `bytes` of the newest held bytes (not handed to the session yet): a send
   * that gave up (SO_SNDTIMEO) must not go out later. Returns how many were taken back.
   */
  withdraw(bytes: number): number {
    let taken = 0;
    while (taken < bytes && this.held.length > 0) {
      const tail = this.held[this.held.length - 1]!;
      const n = Math.min(tail.length, bytes - taken);
      if (n === tail.length) this.held.pop();
      else this.held[this.held.length - 1] = tail.subarray(0, tail.length - n);
      taken += n;
    }
    this._heldBytes -= taken;
    return taken;
  }

  /** The stream is gone: drop what waits. */
  clear(): void {
    this.held = [];
    this._heldBytes = 0;
    this.staging = null;
  }

  private pump(): void {
    if (this.pumping) return; // forward() may credit synchronously
    this.pumping = true;
    try {
      while (this.held.length > 0 && this.handed < this.window) {
        const head = this.held[0]!;
        const room = this.window - this.handed;
        const chunk = head.length <= room ? head : head.subarray(0, room);
        if (chunk === head) this.held.shift();
        else this.held[0] = head.subarray(room);
        this._heldBytes -= chunk.length;
        this.handed += chunk.length;
        this.forward(chunk);
      }
    } finally {
      this.pumping = false;
    }
  }
}
