// Wisp test clients: the real @mercuryworkshop/wisp-js client (promise wrappers), and a raw
// packet-level client for what a well-behaved client never sends.
// @ts-expect-error wisp-js ships no type declarations
import { client as wispJs } from "@mercuryworkshop/wisp-js/client";
import { decodeWispPacket, encodeWispPacket, WISP_EXT, type WispExtension, type WispPacket } from "../../src/protocol/wisp.ts";
import { waitFor } from "./wait.ts";

export interface JsStream {
  stream_id: number;
  send(data: Uint8Array): void;
  close(reason?: number): void;
  onmessage: (data: Uint8Array) => void;
  onclose: (reason: number) => void;
}
export interface JsConnection {
  wisp_version: number;
  server_motd: string | null;
  udp_enabled: boolean;
  max_buffer_size: number;
  server_exts: Record<number, unknown>;
  create_stream(host: string, port: number, type?: "tcp" | "udp"): JsStream;
  close(): void;
}

/** A wisp-js ClientConnection, open. `extensions` overrides the v2 extension list. */
export async function wispJsConnect(url: string, version: 1 | 2, extensions?: unknown[]): Promise<JsConnection> {
  const c = new wispJs.ClientConnection(url, { wisp_version: version, ...(extensions ? { wisp_extensions: extensions } : {}) });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("wisp-js connection timed out")), 10_000);
    c.onopen = () => (clearTimeout(t), resolve());
    c.onerror = () => (clearTimeout(t), reject(new Error("wisp-js connection failed")));
  });
  return c as JsConnection;
}

/** Collects a stream's data and its close reason. */
export function track(s: JsStream) {
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  const st = {
    chunks,
    get bytes() {
      return bytes;
    },
    reason: null as number | null,
    closed: null as unknown as Promise<number>,
    /** Resolves once `n` bytes have arrived. */
    waitBytes(n: number, ms = 20_000): Promise<void> {
      return waitFor(() => bytes >= n, {
        what: `${n} bytes on the stream`,
        timeoutMs: ms,
        failIf: () => st.reason !== null && `stream closed (0x${st.reason.toString(16)})`,
        detail: () => `${bytes} arrived`,
      });
    },
    data(): Uint8Array {
      return Buffer.concat(chunks);
    },
  };
  st.closed = new Promise<number>((resolve) => {
    s.onclose = (reason) => {
      st.reason = reason;
      resolve(reason);
    };
  });
  s.onmessage = (d) => {
    chunks.push(new Uint8Array(d));
    bytes += d.length;
  };
  return st;
}

type Waiter = { pred: (p: WispPacket) => boolean; resolve: (p: WispPacket) => void; reject: (e: Error) => void; timer: ReturnType<typeof setTimeout> };

/** A packet-level Wisp client on a real WebSocket. */
export class RawWisp {
  readonly ws: WebSocket;
  readonly packets: WispPacket[] = [];
  private waiters: Waiter[] = [];
  closed: { code: number; reason: string } | null = null;
  /** Per-stream received DATA bytes. */
  readonly bytes = new Map<number, number>();
  keepData = false;
  /** v2: the server's INFO packet. */
  serverInfo: Extract<WispPacket, { type: "info" }> | null = null;

  private constructor(url: string, protocols?: string[]) {
    this.ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (m) => {
      const d = decodeWispPacket(new Uint8Array(m.data as ArrayBuffer));
      if (!d.ok) throw new Error(`server sent a malformed packet: ${d.msg}`);
      const p = d.packet;
      if (p.type === "data") this.bytes.set(p.stream, (this.bytes.get(p.stream) ?? 0) + p.data.length);
      const w = this.waiters.find((w) => w.pred(p));
      if (w) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(p);
      } else if (p.type !== "data" || this.keepData) this.packets.push(p);
    };
    this.ws.onclose = (c) => {
      this.closed = { code: c.code, reason: c.reason };
      for (const w of this.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error(`websocket closed (${c.code} ${c.reason})`));
      }
    };
  }

  /** Opens the socket. v2 (a subprotocol offered) answers the server's INFO with `info` unless it is null. */
  static async open(url: string, opts: { v2?: boolean; info?: WispExtension[] | null; protocols?: string[] } = {}): Promise<RawWisp> {
    const protocols = opts.protocols ?? (opts.v2 ? ["wisp-v2"] : undefined);
    const c = new RawWisp(url, protocols);
    const first = c.next((p) => p.type === (opts.v2 ? "info" : "continue") && p.stream === 0);
    await new Promise<void>((resolve, reject) => {
      c.ws.addEventListener("open", () => resolve(), { once: true });
      c.ws.addEventListener("error", () => reject(new Error("websocket failed to open")), { once: true });
    });
    const p = await first;
    if (!opts.v2) return c;
    c.serverInfo = p as Extract<WispPacket, { type: "info" }>;
    if (opts.info === null) return c;
    c.send({ type: "info", stream: 0, major: 2, minor: 0, extensions: opts.info ?? [{ id: WISP_EXT.udp, payload: new Uint8Array(0) }, { id: WISP_EXT.streamConfirmation, payload: new Uint8Array(0) }] });
    await c.next((p) => p.type === "continue" && p.stream === 0);
    return c;
  }

  send(p: WispPacket): void {
    this.ws.send(encodeWispPacket(p) as Uint8Array<ArrayBuffer>);
  }
  sendRaw(b: Uint8Array | string): void {
    this.ws.send(b as Uint8Array<ArrayBuffer> | string);
  }

  /** The next packet (already received or future) matching `pred`. */
  next(pred: (p: WispPacket) => boolean, ms = 10_000): Promise<WispPacket> {
    const i = this.packets.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.packets.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        pred,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          reject(new Error(`timed out after ${ms} ms waiting for a packet; unclaimed: ${JSON.stringify(this.packets.slice(-5).map((p) => `${p.type}(${p.stream})`))}`));
        }, ms),
      };
      this.waiters.push(w);
    });
  }

  closeOf(stream: number, ms?: number): Promise<number> {
    return this.next((p) => p.type === "close" && p.stream === stream, ms).then((p) => (p as Extract<WispPacket, { type: "close" }>).reason);
  }

  waitBytes(stream: number, n: number, ms = 10_000): Promise<void> {
    return waitFor(() => (this.bytes.get(stream) ?? 0) >= n, {
      what: `${n} bytes on stream ${stream}`,
      timeoutMs: ms,
      failIf: () => this.closed !== null && `websocket closed (${this.closed.code} ${this.closed.reason})`,
      detail: () => `${this.bytes.get(stream) ?? 0} arrived`,
    });
  }

  close(): void {
    this.ws.close();
  }
}
