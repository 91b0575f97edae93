// Backpressure and bandwidth for one session, in one place (docs/architecture.md#backpressure).
//
// Toward the client: when the client's WebSocket holds more than the high watermark, every
// stream of the session stops reading its target (each would otherwise add one more read's
// worth, up to ~512 KiB, before noticing); they read again once it is back under the low
// watermark. Bandwidth, downloads: a stream whose bytes put the budget in debt stops reading
// until the debt is paid. Bandwidth, uploads: the client is not read until the debt is paid,
// and bytes already read wait in their stream (Bun may have read a few MiB before the pause).
// UDP cannot be slowed down: a datagram is paid or dropped.
//
// Streams own their pause reasons (TcpStream.hold/release); this class only decides when.
import type { TokenBucket } from "../limits/token-bucket.ts";
import { PAUSE, type TcpStream } from "../net/tcp-stream.ts";
import type { Transport } from "./transport.ts";

export class Backpressure {
  private clientFull = false;
  private drainCheck: ReturnType<typeof setTimeout> | undefined;
  private inputPausedUntil = 0;
  private closed = false;

  constructor(
    private readonly transport: Transport,
    private readonly bucket: TokenBucket,
    private readonly watermarks: { high: number; low: number },
    /** The session's open streams, asked whenever all of them must be held or released. */
    private readonly openStreams: () => Iterable<TcpStream>,
  ) {}

  /** A stream just opened: it starts held while the client is full. */
  opened(stream: TcpStream): void {
    if (this.clientFull) stream.hold(PAUSE.clientFull);
  }

  /** `bytes` from `stream` were just queued toward the client. */
  delivered(stream: TcpStream, bytes: number): void {
    if (!this.clientFull && this.transport.buffered() > this.watermarks.high) {
      this.clientFull = true;
      for (const s of this.openStreams()) s.hold(PAUSE.clientFull);
    }
    const wait = this.bucket.consume(bytes, performance.now());
    if (wait > 0) {
      stream.hold(PAUSE.bandwidth);
      setTimeout(() => stream.release(PAUSE.bandwidth), wait);
    }
  }

  /** The client's WebSocket drained some: release the streams once it is low enough. */
  drained(): void {
    if (!this.clientFull || this.closed) return;
    if (this.transport.buffered() > this.watermarks.low) {
      // Not low enough yet; Bun may not fire drain again, so look again shortly.
      this.drainCheck ??= setTimeout(() => {
        this.drainCheck = undefined;
        this.drained();
      }, 5);
      return;
    }
    this.clientFull = false;
    for (const s of this.openStreams()) s.release(PAUSE.clientFull);
  }

  /**
   * The client sent `bytes` for a stream. True: the budget is in debt and the bytes must wait in
   * their stream; the client is not read until it is paid off, then every stream is flushed.
   */
  upload(bytes: number): boolean {
    const now = performance.now();
    const wait = this.bucket.consume(bytes, now);
    if (wait <= 0) return false;
    if (now + wait <= this.inputPausedUntil) return true;
    const first = this.inputPausedUntil <= now;
    this.inputPausedUntil = now + wait;
    if (!first) return true;
    this.transport.pauseInput();
    const resume = () => {
      const left = this.inputPausedUntil - performance.now();
      if (left > 1) return void setTimeout(resume, left);
      if (this.closed) return;
      for (const s of this.openStreams()) s.flush();
      this.transport.resumeInput();
    };
    setTimeout(resume, wait);
    return true;
  }

  /** A datagram of `bytes` either way: true if the budget pays for it in full, false to drop it (spending nothing). */
  admitDatagram(bytes: number): boolean {
    return this.bucket.tryTake(bytes, performance.now());
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.drainCheck);
  }
}
