// Backpressure and bandwidth for one session, in one place (docs/architecture.md#backpressure).
//
// Toward the client: when the client's WebSocket holds more than the high watermark, every
// stream of the session stops reading its target (each would otherwise add one more read's
// worth, up to ~512 KiB, before noticing); they read again once it is back under the low
// watermark. Above the server's memory budget, streams stop reading until it clears.
// Bandwidth (the session's bucket, and the identity's shared one if any), downloads: a stream
// whose bytes put a budget in debt stops reading until the debt is paid. Uploads: the client is
// not read until the debt is paid, and bytes already read wait in their stream (Bun may have
// read a few MiB before the pause). UDP cannot be slowed down: a datagram is paid in full or
// dropped, and datagrams toward a client above the high watermark are dropped, never queued.
//
// Streams own their pause reasons (TcpStream.hold/release); this class only decides when.
import type { MemoryWatch } from "../limits/memory-watch.ts";
import type { TokenBucket } from "../limits/token-bucket.ts";
import { PAUSE, type TcpStream } from "../net/tcp-stream.ts";
import type { UdpDropReason } from "./metrics.ts";
import type { Transport } from "./transport.ts";

export class Backpressure {
  private clientFull = false;
  private drainCheck: ReturnType<typeof setTimeout> | undefined;
  /** The client is not read (upload debt) and a resume is pending. */
  private inputPaused = false;
  private inputPausedUntil = 0;
  private closed = false;
  /** Set while waiting for the memory budget to clear. */
  private memoryWait: (() => void) | null = null;

  constructor(
    private readonly transport: Transport,
    /** The session's bucket, then the identity's shared one when it has one: both must pay. */
    private readonly buckets: readonly TokenBucket[],
    private readonly watermarks: { high: number; low: number },
    private readonly memory: MemoryWatch,
    /** The session's open streams, asked whenever all of them must be held or released. */
    private readonly openStreams: () => Iterable<TcpStream>,
    /** Milliseconds, monotonic; tests pass their own to land a message at a chosen instant. */
    private readonly clock: () => number = () => performance.now(),
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
    if (this.memory.overloaded()) this.holdForMemory(stream);
    const wait = this.debt(bytes);
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
   * The client sent `bytes` for a stream. True: a budget is in debt and the bytes must wait in
   * their stream; the client is not read until it is paid off, then every stream is flushed.
   */
  upload(bytes: number): boolean {
    const wait = this.debt(bytes);
    if (wait <= 0) return false;
    const until = this.clock() + wait;
    if (until > this.inputPausedUntil) this.inputPausedUntil = until;
    // Already paused: the pending resume waits out the new deadline and flushes these bytes too.
    // The flag, not the deadline, says so: a resume may run just before the deadline, and a
    // message in that gap must pause the client again or it would never be paused again.
    if (this.inputPaused) return true;
    this.inputPaused = true;
    this.transport.pauseInput();
    setTimeout(this.resume, wait);
    return true;
  }

  /** The upload debt may be paid: wait out what is left of it, else flush and read the client again. */
  private readonly resume = (): void => {
    if (this.closed) return;
    const left = this.inputPausedUntil - this.clock();
    if (left > 1) return void setTimeout(this.resume, left);
    this.inputPaused = false;
    for (const s of this.openStreams()) s.flush(); // bytes held while paused (none else flushes a socket that never filled)
    this.transport.resumeInput();
  };

  /**
   * A datagram of `bytes`, toward the client or from it: null if it may go (and is paid for),
   * else why it is dropped. Nothing is spent on a datagram that is dropped.
   */
  admitDatagram(bytes: number, toClient: boolean): UdpDropReason | null {
    if (toClient && (this.clientFull || this.transport.buffered() > this.watermarks.high)) return "backpressure";
    const now = this.clock();
    if (this.buckets.length > 1 && this.buckets.some((b) => b.available(now) < bytes)) return "bandwidth";
    for (const b of this.buckets) if (!b.tryTake(bytes, now)) return "bandwidth";
    return null;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.drainCheck);
    this.memoryWait?.();
  }

  /** Every bucket pays for `bytes`; the wait until the deepest debt is paid. */
  private debt(bytes: number): number {
    let wait = 0;
    let now = -1;
    for (const b of this.buckets) {
      if (b.unlimited) continue; // nothing to pay: no clock to read (once or twice per chunk otherwise)
      if (now < 0) now = this.clock();
      wait = Math.max(wait, b.consume(bytes, now));
    }
    return wait;
  }

  private holdForMemory(stream: TcpStream): void {
    stream.hold(PAUSE.memory);
    if (this.memoryWait) return;
    this.memoryWait = this.memory.onCleared(() => {
      this.memoryWait = null;
      if (!this.closed) for (const s of this.openStreams()) s.release(PAUSE.memory);
    });
  }
}
