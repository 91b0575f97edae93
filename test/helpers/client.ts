// A protocol-level test client: speaks JSON or binary framing over a real WebSocket and lets a
// test await specific events. Uses the project's own codecs in the client direction.
import { decodeBinaryEvent, encodeBinaryRequest } from "../../src/protocol/binary.ts";
import { decodeJsonEvent, encodeJsonRequest } from "../../src/protocol/json.ts";
import type { Event, Framing, Request } from "../../src/protocol/messages.ts";
import { waitFor } from "./wait.ts";

type Waiter = { pred: (e: Event) => boolean; resolve: (e: Event) => void; reject: (e: Error) => void; timer: ReturnType<typeof setTimeout> };

export class TestClient {
  readonly ws: WebSocket;
  readonly events: Event[] = [];
  private waiters: Waiter[] = [];
  closed = false;
  closeCode = 0;
  /** Per-id received data, concatenated lazily. */
  private chunks = new Map<number, Uint8Array[]>();
  onEvent: ((e: Event) => void) | null = null;
  keepEvents = true;

  constructor(url: string, public framing: Framing = "json", headers?: Record<string, string>) {
    this.ws = headers ? new WebSocket(url, { headers } as never) : new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (m) => {
      const e = typeof m.data === "string" ? decodeJsonEvent(m.data) : decodeBinaryEvent(new Uint8Array(m.data as ArrayBuffer));
      if (e.ev === "data") {
        let list = this.chunks.get(e.id);
        if (!list) this.chunks.set(e.id, (list = []));
        list.push(e.data);
      }
      this.onEvent?.(e);
      const w = this.waiters.find((w) => w.pred(e));
      if (w) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(e);
      } else if (this.keepEvents && e.ev !== "data" && e.ev !== "credit") this.events.push(e);
    };
    this.ws.onclose = (c) => {
      this.closed = true;
      this.closeCode = c.code;
      for (const w of this.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error(`websocket closed (${c.code}) while waiting`));
      }
    };
  }

  static async open(url: string, framing: Framing = "json", headers?: Record<string, string>): Promise<TestClient> {
    const c = new TestClient(url, framing, headers);
    await new Promise<void>((resolve, reject) => {
      c.ws.addEventListener("open", () => resolve(), { once: true });
      c.ws.addEventListener("error", () => reject(new Error("websocket failed to open")), { once: true });
    });
    return c;
  }

  send(r: Request): void {
    if (this.framing === "binary") this.ws.send(encodeBinaryRequest(r) as Uint8Array<ArrayBuffer>);
    else this.ws.send(encodeJsonRequest(r));
  }

  raw(data: string | Uint8Array): void {
    this.ws.send(data as string | Uint8Array<ArrayBuffer>);
  }

  /** Resolves with the first event (past or future) matching pred. */
  wait(pred: (e: Event) => boolean, timeoutMs = 10_000, what = "event"): Promise<Event> {
    const past = this.events.findIndex(pred);
    if (past >= 0) return Promise.resolve(this.events.splice(past, 1)[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.events.slice(-5).map(summary))}`));
      }, timeoutMs);
      const w: Waiter = { pred, resolve, reject, timer };
      this.waiters.push(w);
    });
  }

  /** The next non-data event for id. */
  next(id: number, timeoutMs?: number): Promise<Event> {
    return this.wait((e) => e.id === id && e.ev !== "data" && e.ev !== "credit", timeoutMs, `event on id ${id}`);
  }

  async connect(id: number, addr: string, port: number, op: "connect" | "connect_tls" = "connect"): Promise<Event> {
    this.send({ op, id, addr, port });
    return this.next(id);
  }

  received(id: number): Uint8Array {
    const list = this.chunks.get(id) ?? [];
    return Buffer.concat(list);
  }
  receivedBytes(id: number): number {
    return (this.chunks.get(id) ?? []).reduce((n, c) => n + c.length, 0);
  }
  clearReceived(id: number): void {
    this.chunks.delete(id);
  }

  /** Wait until at least n bytes have arrived on id. */
  waitBytes(id: number, n: number, timeoutMs = 30_000): Promise<void> {
    return waitFor(() => this.receivedBytes(id) >= n, {
      what: `${n} bytes on id ${id}`,
      timeoutMs,
      failIf: () => this.closed && `websocket closed (${this.closeCode})`,
      detail: () => `${this.receivedBytes(id)} arrived`,
    });
  }

  close(): void {
    this.ws.close();
  }
}

/**
 * Echo `total` bytes through stream `id` as a version-1 client (paced by what came back, so the
 * stream buffer cap is never hit) and hash both directions. `chunkAt(n)` gives the n-th chunk.
 */
export async function echoTransfer(c: TestClient, id: number, total: number, chunkAt: (n: number) => Uint8Array, timeoutMs = 60_000): Promise<{ got: number; up: string; down: string }> {
  const up = new Bun.CryptoHasher("sha256");
  const down = new Bun.CryptoHasher("sha256");
  let got = 0;
  c.onEvent = (e) => {
    if (e.ev === "data" && e.id === id) {
      down.update(e.data);
      got += e.data.length;
    }
  };
  c.clearReceived(id);
  let sent = 0;
  const failIf = () => c.closed && `websocket closed (${c.closeCode})`;
  const detail = () => `${got} of ${sent} sent bytes back`;
  try {
    for (let n = 0; sent < total; n++) {
      await waitFor(() => sent - got <= 512 * 1024, { what: "the echo to catch up", timeoutMs, intervalMs: 1, failIf, detail });
      const chunk = chunkAt(n).subarray(0, total - sent);
      c.send({ op: "send", id, data: chunk });
      up.update(chunk);
      sent += chunk.length;
    }
    await waitFor(() => got >= total, { what: `all ${total} bytes echoed`, timeoutMs, failIf, detail });
  } finally {
    c.onEvent = null;
  }
  return { got, up: up.digest("hex"), down: down.digest("hex") };
}

function summary(e: Event): string {
  return e.ev === "error" || e.ev === "denied" ? `${e.ev}(${e.id}): ${e.msg}` : `${e.ev}(${e.id})`;
}
