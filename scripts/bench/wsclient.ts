// A minimal wasmnet session client for the bench: one WebSocket (Bun's global WebSocket), binary
// framing through the project's own codec, events dispatched to per-stream sinks.
import { decodeBinaryEvent, encodeBinaryRequest } from "../../src/protocol/binary.ts";
import type { Event, Request } from "../../src/protocol/messages.ts";
import { withTimeout } from "./common.ts";

export interface Sink {
  data(d: Uint8Array): void;
  credit?(bytes: number): void;
  /** error / denied / closed / end: the stream is over (or broken). */
  other(ev: Event): void;
}

export interface FrameStats {
  dataFrames: number;
  dataBytes: number;
  creditFrames: number;
  creditBytes: number;
  sentFrames: number;
  sentBytes: number;
}

export class WnSession {
  readonly sinks = new Map<number, Sink>();
  readonly waiters = new Map<number, (ev: Event) => void>();
  /** Server hello, when negotiated. */
  hello: Extract<Event, { ev: "hello" }> | null = null;
  stats: FrameStats = { dataFrames: 0, dataBytes: 0, creditFrames: 0, creditBytes: 0, sentFrames: 0, sentBytes: 0 };
  closedWith: string | null = null;
  /** Session-level problems (error on id 0, events for unknown ids): reported, never ignored. */
  problems: string[] = [];
  private helloWaiter: ((ev: Event) => void) | null = null;

  private constructor(readonly ws: WebSocket) {
    ws.binaryType = "arraybuffer";
    ws.onmessage = (m) => this.onMessage(m.data);
    ws.onclose = (c) => {
      this.closedWith = `WebSocket closed ${c.code} ${c.reason}`;
      const ev: Event = { ev: "error", id: 0, code: "EINTERNAL", msg: this.closedWith };
      for (const s of this.sinks.values()) s.other(ev);
      for (const w of this.waiters.values()) w(ev);
    };
  }

  static async open(url: string): Promise<WnSession> {
    const ws = new WebSocket(url);
    await withTimeout(
      new Promise<void>((res, rej) => {
        ws.onopen = () => res();
        ws.onerror = () => rej(new Error(`WebSocket to ${url} failed`));
      }),
      10_000,
      () => `opening WebSocket ${url}`,
    );
    return new WnSession(ws);
  }

  /** Version 2 with flow control. Returns null (and stays version 1) when the server lacks it. */
  async negotiateFlow(): Promise<{ window: number } | { unsupported: string }> {
    const p = new Promise<Event>((res) => (this.helloWaiter = res));
    this.send({ op: "hello", id: 0, version: 2, features: ["flow"] });
    let ev: Event;
    try {
      ev = await withTimeout(p, 3000, () => "waiting for the hello event");
    } catch (e) {
      return { unsupported: String((e as Error).message) };
    }
    if (ev.ev !== "hello") return { unsupported: `hello answered with ${JSON.stringify(ev)}` };
    this.hello = ev;
    if (ev.version < 2 || !(ev.features as string[]).includes("flow"))
      return { unsupported: `server hello: version ${ev.version}, features [${ev.features.join(",")}]` };
    if (!(ev.window > 0)) return { unsupported: `server hello window is ${ev.window}` };
    return { window: ev.window };
  }

  private onMessage(raw: ArrayBuffer | string): void {
    if (typeof raw === "string") {
      this.problems.push(`unexpected text frame: ${raw.slice(0, 200)}`);
      return;
    }
    const ev = decodeBinaryEvent(new Uint8Array(raw));
    if (ev.ev === "hello") {
      this.helloWaiter?.(ev);
      this.helloWaiter = null;
      return;
    }
    if (ev.ev === "data") {
      this.stats.dataFrames++;
      this.stats.dataBytes += ev.data.length;
    } else if (ev.ev === "credit") {
      this.stats.creditFrames++;
      this.stats.creditBytes += ev.bytes;
    }
    if (ev.id === 0 && this.helloWaiter && ev.ev === "error") {
      this.helloWaiter(ev);
      this.helloWaiter = null;
      return;
    }
    const w = this.waiters.get(ev.id);
    if (w) {
      this.waiters.delete(ev.id);
      return w(ev);
    }
    const s = this.sinks.get(ev.id);
    if (!s) {
      if (this.problems.length < 20) this.problems.push(`event for unknown id: ${describe(ev)}`);
      return;
    }
    if (ev.ev === "data") s.data(ev.data);
    else if (ev.ev === "credit") s.credit?.(ev.bytes);
    else s.other(ev);
  }

  send(r: Request): void {
    this.sendFrame(encodeBinaryRequest(r));
  }

  sendFrame(f: Uint8Array): void {
    this.stats.sentFrames++;
    this.stats.sentBytes += f.length;
    this.ws.send(f as Uint8Array<ArrayBuffer>);
  }

  /** The next event on `id` (before any sink sees it). */
  next(id: number, ms = 10_000): Promise<Event> {
    return withTimeout(new Promise<Event>((res) => this.waiters.set(id, res)), ms, () => `waiting for an event on id ${id}`).finally(() =>
      this.waiters.delete(id),
    );
  }

  /** connect → connected, or throws with what the server said. */
  async connect(id: number, addr: string, port: number): Promise<void> {
    const p = this.next(id);
    this.send({ op: "connect", id, addr, port });
    const ev = await p;
    if (ev.ev !== "connected") throw new Error(`connect ${addr}:${port} (id ${id}) answered ${describe(ev)}`);
  }

  close(): void {
    try {
      this.ws.close(1000);
    } catch {}
  }
}

export function describe(ev: Event): string {
  if (ev.ev === "data") return `data(id ${ev.id}, ${ev.data.length} bytes)`;
  return JSON.stringify(ev);
}
