// One relayed TCP or TLS stream (outbound, or accepted by a listener): the write queue that
// makes Bun's non-buffering socket.write() safe (BUN-NOTES §0.2), read pausing for
// backpressure and bandwidth, credit for flow control, and half-close.
import type { Socket, SocketHandler } from "bun";
import type { ErrorCode } from "../protocol/constants.ts";
import type { SocketKind } from "../server/metrics.ts";
import { CLOSE_FLUSH_MS } from "../constants.ts";

/** What a stream needs from the session that owns it. */
export interface StreamOwner {
  readonly flow: boolean;
  readonly window: number;
  readonly streamBufferBytes: number;
  opened(stream: TcpStream): void;
  received(stream: TcpStream, data: Uint8Array): void;
  credit(stream: TcpStream, bytes: number): void;
  remoteEnded(stream: TcpStream): void;
  /** The stream is gone. `code` set: it ended with that error (not yet reported to the client). */
  ended(stream: TcpStream, reason: string, code?: ErrorCode, msg?: string): void;
}

export const PAUSE_BACKPRESSURE = 1;
export const PAUSE_BANDWIDTH = 2;

export type StreamState = "connecting" | "open" | "closing" | "closed";

/** Where the stream goes, for error messages and the audit line. */
export interface StreamTarget {
  name: string | null;
  addr: string;
  port: number;
  rule: string;
}

export class TcpStream {
  socket: Socket<TcpStream> | null = null;
  state: StreamState = "connecting";
  /** Bytes the target has not taken yet, oldest first; null while empty (most streams, most of the time). */
  private queue: Uint8Array[] | null = null;
  queued = 0;
  /** Flow control: bytes the client sent that have not been credited back. */
  outstanding = 0;
  private pauseMask = 0;
  up = 0;
  down = 0;
  readonly started = performance.now();
  remoteFin = false;
  localFin = false;
  private shutdownPending = false;
  timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly owner: StreamOwner,
    readonly id: number,
    readonly kind: SocketKind,
    public target: StreamTarget,
  ) {}

  get where(): string {
    const h = this.target.addr.includes(":") ? `[${this.target.addr}]` : this.target.addr;
    return `${h}:${this.target.port}`;
  }

  /** The connection (and TLS handshake) is up: flush what the client sent meanwhile. */
  attach(socket: Socket<TcpStream>, announce = true): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.socket = socket;
    this.state = "open";
    socket.setNoDelay(true);
    if (announce) this.owner.opened(this);
    if (this.pauseMask) socket.pause();
    this.flush();
  }

  /**
   * Client → target. `held`: over the bandwidth budget, queue even if the socket could take it
   * now (the session flushes when the budget is paid off; such bytes are bounded by the paused
   * WebSocket, not by stream_buffer_bytes). Returns an error message when a limit was hit.
   */
  write(data: Uint8Array, held = false): string | null {
    const n = data.length;
    if (this.owner.flow) {
      if (this.outstanding + n > this.owner.window)
        return `send of ${n} bytes exceeds the flow-control window (${this.owner.window} bytes, ${this.outstanding} outstanding)`;
      this.outstanding += n;
    } else if (!held && this.queued + n > this.owner.streamBufferBytes) {
      return `stream buffer full: the target is not reading and stream_buffer_bytes (${this.owner.streamBufferBytes}) would be exceeded`;
    }
    this.up += n;
    if (!held && this.state === "open" && this.queue === null) {
      const written = this.socket!.write(data);
      if (written < 0) return null; // closing; the close handler reports it
      if (written < n) this.enqueue(data.subarray(written));
      if (written > 0 && this.owner.flow) this.owner.credit(this, written);
    } else {
      this.enqueue(data);
    }
    return null;
  }

  private enqueue(chunk: Uint8Array): void {
    (this.queue ??= []).push(chunk);
    this.queued += chunk.length;
  }

  /** Writes queued bytes until the socket is full; called on open and on every drain. */
  flush(): void {
    const s = this.socket;
    if (!s) return;
    let credited = 0;
    const q = this.queue;
    if (q !== null) {
      while (q.length > 0) {
        const head = q[0]!;
        const written = s.write(head);
        if (written <= 0) break;
        credited += written;
        this.queued -= written;
        if (written < head.length) {
          q[0] = head.subarray(written);
          break;
        }
        q.shift();
      }
      if (q.length === 0) this.queue = null;
    }
    if (credited > 0 && this.owner.flow && this.state === "open") this.owner.credit(this, credited);
    if (this.queue === null) {
      if (this.shutdownPending) {
        this.shutdownPending = false;
        s.shutdown();
        this.finishIfBothDone();
      }
      if (this.state === "closing") s.end();
    }
  }

  /** Client half-close: FIN toward the target once the queue is written. */
  shutdown(): void {
    if (this.localFin) return;
    this.localFin = true;
    if (this.state === "open" && this.queue === null) {
      this.socket!.shutdown();
      this.finishIfBothDone();
    } else this.shutdownPending = true;
  }

  /** Target FIN. */
  onEnd(): void {
    this.remoteFin = true;
    if (this.state !== "open") return;
    this.owner.remoteEnded(this);
    this.finishIfBothDone();
  }

  private finishIfBothDone(): void {
    if (this.remoteFin && this.localFin && !this.shutdownPending && this.state === "open") this.socket!.end();
  }

  received(data: Uint8Array): void {
    if (this.state !== "open") return;
    this.down += data.length;
    this.owner.received(this, data);
  }

  pause(reason: number): void {
    if (this.pauseMask === 0) this.socket?.pause();
    this.pauseMask |= reason;
  }

  unpause(reason: number): void {
    if (!(this.pauseMask & reason)) return;
    this.pauseMask &= ~reason;
    if (this.pauseMask === 0 && this.state === "open") this.socket?.resume();
  }

  /** The client closed it: write what is queued (bounded by the buffer cap and a timer), then FIN. */
  closeByClient(): void {
    if (this.state === "closed" || this.state === "closing") return;
    const wasOpen = this.state === "open";
    this.state = "closing";
    clearTimeout(this.timer);
    if (!wasOpen || this.queue === null) {
      this.finish("closed by client", true);
      return;
    }
    this.timer = setTimeout(() => this.finish("closed by client; target did not take queued bytes in time"), CLOSE_FLUSH_MS);
  }

  /** End now with an error the client has not heard yet (connect failure, limit, TLS). */
  fail(code: ErrorCode, msg: string, reason = msg): void {
    if (this.state === "closed") return;
    this.state = "closed";
    clearTimeout(this.timer);
    this.queue = null;
    this.socket?.terminate();
    this.owner.ended(this, reason, code, msg);
  }

  /**
   * End now, quietly for the client (it already has `closed`, or the session is going away).
   * Graceful: FIN to the target; otherwise RST, dropping anything unsent.
   */
  finish(reason: string, graceful = false): void {
    if (this.state === "closed") return;
    this.state = "closed";
    clearTimeout(this.timer);
    this.queue = null;
    const s = this.socket;
    if (s) {
      if (graceful) s.end();
      else s.terminate();
    }
    this.owner.ended(this, reason);
  }

  /** Bun's close handler: the socket is gone. */
  onClose(err?: Error): void {
    if (this.state === "closed") return;
    // After our shutdown(), Bun reports the peer's FIN as a plain close without running `end`
    // [exp]: it is still the target's half-close, and a half_close client is owed its `end`.
    if (!err && this.localFin && !this.remoteFin && this.state === "open") {
      this.remoteFin = true;
      this.owner.remoteEnded(this);
    }
    const reason = err ? `socket error: ${err.message}` : this.remoteFin ? "target closed" : "connection closed";
    this.state = "closed";
    clearTimeout(this.timer);
    this.queue = null;
    this.owner.ended(this, reason);
  }
}

/** Shared handlers: one object for every socket, state lives in socket.data (memory per stream). */
export const tcpHandlers: SocketHandler<TcpStream> = {
  open(socket) {
    const s = socket.data;
    if (s.state !== "connecting") return void socket.terminate(); // timed out or closed meanwhile
    s.attach(socket);
  },
  data(socket, data) {
    socket.data.received(data);
  },
  drain(socket) {
    socket.data.flush();
  },
  end(socket) {
    socket.data.onEnd();
  },
  close(socket, err) {
    socket.data.onClose(err);
  },
  error(socket, err) {
    socket.data.onClose(err);
  },
  connectError(socket, err) {
    const s = socket.data;
    if (s.state !== "connecting") return;
    const code = (err as { code?: string }).code;
    if (code === "ECONNREFUSED") s.fail("ECONNREFUSED", `connect ${s.where} refused`);
    else s.fail("EHOSTUNREACH", `connect ${s.where} failed: ${code ?? err.message}`);
  },
};

/** TLS: `open` fires at TCP connect, `handshake` after verification (BUN-NOTES §2.1, §2.8). */
export const tlsHandlers: SocketHandler<TcpStream> = {
  ...tcpHandlers,
  open(socket) {
    const s = socket.data;
    if (s.state !== "connecting") return void socket.terminate();
    s.socket = socket; // so a timeout can terminate a handshake that never finishes
  },
  handshake(socket, success, authError) {
    const s = socket.data;
    if (s.state !== "connecting") return void socket.terminate();
    if (!success || authError) {
      const why = authError ? `${(authError as { code?: string }).code ?? "error"}: ${authError.message}` : "handshake failed";
      s.fail("ETLS", `TLS to ${s.target.name ?? s.target.addr}:${s.target.port} failed: ${why}`);
      return;
    }
    s.attach(socket);
  },
};
