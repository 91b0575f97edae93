// One relayed TCP or TLS stream (outbound, or accepted by a listener). It owns everything about
// itself — socket, state, connect timer, write queue, flow-control credit, the reasons its reads
// are paused, idle bookkeeping — and its owner (the session) only calls its methods and hears
// about it through StreamOwner.
//
// Bun's socket.write() does not buffer (docs/bun.md#partial-writes): the unsent
// tail is kept here and written again on `drain`, in order.
import type { Socket, SocketHandler } from "bun";
import { CLOSE_FLUSH_MS } from "../constants.ts";
import { formatHostPort } from "../policy/address.ts";
import type { Decision } from "../policy/decide.ts";
import type { ErrorCode } from "../protocol/constants.ts";
import type { Cleared } from "./gate.ts";
import { IdleMark } from "./idle-mark.ts";
import type { SocketKind } from "./socket-kind.ts";
import { atTurnEnd, currentTurn, giveStage, noteWrite, SMALL_WRITE, STAGE_BYTES, takeStage, type TurnWriter } from "./turn-writes.ts";

/** Why a stream stopped reading its target; it reads again when no reason is left. */
export const PAUSE = {
  /** The client's WebSocket is above its high watermark. */
  clientFull: 1,
  /** The session's bandwidth budget is in debt. */
  bandwidth: 2,
  /** The adapter's per-stream receive buffer is full (POSIX recv). */
  consumer: 4,
  /** The server is above its memory budget. */
  memory: 8,
  /** An accepted connection waits for its max_connections_per_identity unit (not announced yet). */
  admission: 16,
} as const;

export type StreamState = "connecting" | "open" | "closing" | "closed";

/** How a stream ended, for the client (event) and the audit line (reason). */
export type StreamOutcome =
  | { kind: "closed"; reason: string }
  | { kind: "error"; code: ErrorCode; msg: string; reason: string }
  | { kind: "denied"; refusal: Decision; reason: string };

/** What a stream tells the session that owns it. */
export interface StreamOwner {
  /** Version-2 credit flow control is on: `window` bounds what a client may have outstanding. */
  readonly flow: boolean;
  readonly window: number;
  /** Version 1: the most a stream queues toward a slow target. */
  readonly streamBufferBytes: number;
  opened(stream: TcpStream): void;
  received(stream: TcpStream, data: Uint8Array): void;
  /** The target took `bytes` of what the client sent. */
  credit(stream: TcpStream, bytes: number): void;
  /** The target half-closed (FIN). */
  remoteEnded(stream: TcpStream): void;
  /** The stream is gone. Called exactly once. */
  ended(stream: TcpStream, outcome: StreamOutcome): void;
}

/** Where the stream goes, for error messages and the audit line. */
export interface StreamTarget {
  name: string | null;
  addr: string;
  port: number;
  rule: string;
}

/** Result of a client write that hit a limit: the stream cannot go on. */
export type WriteProblem = string | null;

/** The first tail buffer small queued chunks are copied onto; the next ones double, up to STAGE_BYTES. */
const TAIL_FIRST_BYTES = 4 * 1024;

export class TcpStream implements TurnWriter {
  private socket: Socket<TcpStream> | null = null;
  private _state: StreamState = "connecting";
  /** What the gate cleared (immutable, so shared as it is), or the accepted peer. */
  private _target: Readonly<StreamTarget>;
  /** Bytes the target has not taken yet, oldest first; null while empty (most streams, most of the time). */
  private queue: Uint8Array[] | null = null;
  private queued = 0;
  /** The server-owned buffer small queued chunks are copied onto (see enqueue); null when none. */
  private tail: Uint8Array | null = null;
  /** Where the bytes in `tail` end. */
  private tailEnd = 0;
  /** Flow control: bytes the client sent that have not been credited back. */
  private outstanding = 0;
  private pauseMask = 0;
  /** The loop turn of this stream's latest small write that went out at once (turn-writes.ts). */
  private writeTurn = -1;
  /** Small chunks sent after it in the same turn, copied here until the turn ends; null when none. */
  private stage: Uint8Array | null = null;
  private staged = 0;
  private turnPending = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private shutdownPending = false;
  private remoteFin = false;
  private _localFin = false;
  private readonly idle = new IdleMark();
  up = 0;
  down = 0;
  readonly started = performance.now();

  constructor(
    private readonly owner: StreamOwner,
    readonly id: number,
    readonly kind: SocketKind,
    target: StreamTarget,
  ) {
    this._target = target;
  }

  get state(): StreamState {
    return this._state;
  }
  get target(): Readonly<StreamTarget> {
    return this._target;
  }
  /** The client shut its side down (no more sends). */
  get localFin(): boolean {
    return this._localFin;
  }
  get isOpen(): boolean {
    return this._state === "open";
  }
  get where(): string {
    return formatHostPort(this._target.addr, this._target.port);
  }

  // ---- opening ----

  /** Give the whole open (look-up, connect, TLS handshake) `ms`, then fail with ETIMEDOUT. */
  armConnectTimeout(ms: number, what: string): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fail("ETIMEDOUT", `${what} ${this.where} timed out after ${ms / 1000} s`), ms);
  }

  /** Connect to what the gate cleared. Failures arrive through the socket handlers. */
  dial(to: Cleared, tls: object | null, allowHalfOpen: boolean): void {
    this._target = to;
    Bun.connect<TcpStream>({
      hostname: to.addr, // the canonical IP that passed, never the name (no rebinding gap)
      port: to.port,
      data: this,
      allowHalfOpen,
      socket: tls ? TcpStream.tlsHandlers : TcpStream.handlers,
      tls: tls ?? undefined,
    }).catch(() => {}); // reported through connectError
  }

  /** The connection is up (dialled, pooled or accepted): flush what the client sent meanwhile. */
  adopt(socket: Socket<TcpStream>, announce = true, target?: Cleared): void {
    if (target) this._target = target;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.socket = socket;
    this._state = "open";
    socket.setNoDelay(true);
    if (announce) this.owner.opened(this);
    if (this.pauseMask) socket.pause();
    this.flush();
  }

  // ---- client → target ----

  /**
   * Client → target. `held`: over the bandwidth budget, queue even if the socket could take it
   * now (the session flushes when the budget is paid off; such bytes are bounded by the paused
   * client, not by stream_buffer_bytes). Returns a problem when a limit was hit.
   */
  write(data: Uint8Array, held = false): WriteProblem {
    const n = data.length;
    const owner = this.owner;
    if (owner.flow) {
      if (this.outstanding + n > owner.window)
        return `send of ${n} bytes exceeds the flow-control window (${owner.window} bytes, ${this.outstanding} outstanding)`;
      this.outstanding += n;
    } else if (!held && this.queued + n > owner.streamBufferBytes) {
      return `stream buffer full: the target is not reading and stream_buffer_bytes (${owner.streamBufferBytes}) would be exceeded`;
    }
    this.up += n;
    if (!held && this._state === "open" && this.queue === null) {
      if (n < SMALL_WRITE) {
        // The first small chunk of a turn goes out at once; the ones after it wait for the turn's end.
        if (this.stage !== null || this.writeTurn === currentTurn()) return this.addToStage(data);
        this.writeTurn = currentTurn();
        noteWrite();
      } else if (this.stage !== null) {
        this.unstage(); // staged bytes go first
        if (this.queue !== null) {
          this.enqueue(data);
          return null;
        }
      }
      const written = this.socket!.write(data);
      if (written < 0) return null; // closing; the close handler reports it
      if (written < n) this.enqueue(data.subarray(written));
      if (written > 0) this.credited(written);
    } else {
      this.unstage();
      this.enqueue(data);
    }
    return null;
  }

  /** A small chunk after the turn's first: copied to the stage (the message buffer dies at once). */
  private addToStage(data: Uint8Array): null {
    const need = this.staged + data.length;
    if (this.stage !== null && need > this.stage.length) {
      if (need <= STAGE_BYTES) {
        // The stage starts small and doubles (turn-writes.ts): move what it holds to a larger one.
        const larger = takeStage(Math.max(need, this.stage.length * 2));
        larger.set(this.stage.subarray(0, this.staged));
        giveStage(this.stage);
        this.stage = larger;
      } else {
        this.unstage();
        if (this.queue !== null) {
          this.enqueue(data); // the target is full: the rest waits for its drain
          return null;
        }
      }
    }
    if (this.stage === null) this.stage = takeStage(data.length);
    this.stage.set(data, this.staged);
    this.staged += data.length;
    if (!this.turnPending) {
      this.turnPending = true;
      atTurnEnd(this);
    }
    return null;
  }

  /** The loop turn is over: write what was staged during it. */
  endOfTurn(): void {
    this.turnPending = false;
    this.unstage();
  }

  /**
   * Writes the staged bytes (only ever with an empty queue: anything queued after them first
   * unstages), queues what the socket does not take, and returns the stage to the pool.
   */
  private unstage(): void {
    const stage = this.stage;
    if (stage === null) return;
    const n = this.staged;
    this.stage = null;
    this.staged = 0;
    const written = this._state === "open" ? this.socket!.write(stage.subarray(0, n)) : -1;
    if (written >= 0 && written < n) this.enqueue(stage.subarray(written, n), true); // copied: the stage is reused
    giveStage(stage);
    if (written > 0) this.credited(written);
  }

  /**
   * Queues `chunk` after everything else. A small chunk is copied onto the queue's server-owned
   * tail: kept as a view, a one-byte send would keep its whole message buffer alive (hundreds of
   * bytes per queued byte, where stream_buffer_bytes counts only the payload). A large one is kept
   * as it is, or copied when `borrowed` (its buffer is reused, like the stage).
   */
  private enqueue(chunk: Uint8Array, borrowed = false): void {
    const n = chunk.length;
    const q = (this.queue ??= []);
    this.queued += n;
    if (n >= SMALL_WRITE) return void q.push(borrowed ? chunk.slice() : chunk);
    const tail = this.tail;
    const last = q.length > 0 ? q[q.length - 1]! : null;
    // Still the queue's last chunk (perhaps partly written since) with room: it grows in place.
    if (tail !== null && last !== null && last.buffer === tail.buffer && last.byteOffset + last.length === this.tailEnd && this.tailEnd + n <= tail.length) {
      tail.set(chunk, this.tailEnd);
      this.tailEnd += n;
      q[q.length - 1] = tail.subarray(last.byteOffset, this.tailEnd);
      return;
    }
    // A new tail, twice the last one's size up to a stage's: a stream that queues a little holds a little.
    const next = new Uint8Array(Math.max(n, Math.min(STAGE_BYTES, tail === null ? TAIL_FIRST_BYTES : tail.length * 2)));
    next.set(chunk, 0);
    this.tail = next;
    this.tailEnd = n;
    q.push(next.subarray(0, n));
  }

  private dropQueue(): void {
    this.queue = null;
    this.tail = null; // an idle stream keeps no buffer
    this.tailEnd = 0;
  }

  private credited(bytes: number): void {
    if (!this.owner.flow || this._state !== "open") return;
    this.outstanding -= bytes;
    this.owner.credit(this, bytes);
  }

  /** Writes queued bytes until the socket is full; on open, on every drain, and when the budget is paid. */
  flush(): void {
    const s = this.socket;
    if (!s) return;
    this.unstage();
    let written = 0;
    const q = this.queue;
    if (q !== null) {
      while (q.length > 0) {
        const head = q[0]!;
        const n = s.write(head);
        if (n <= 0) break;
        written += n;
        this.queued -= n;
        if (n < head.length) {
          q[0] = head.subarray(n);
          break;
        }
        q.shift();
      }
      if (q.length === 0) this.dropQueue();
    }
    if (written > 0) this.credited(written);
    if (this.queue === null) {
      if (this.shutdownPending) {
        this.shutdownPending = false;
        s.shutdown();
        this.endIfBothDone();
      }
      if (this._state === "closing") s.end();
    }
  }

  /** Client half-close: FIN toward the target once the queue is written. */
  shutdown(): void {
    if (this._localFin) return;
    this._localFin = true;
    this.unstage(); // what the client sent before the shutdown goes first
    if (this._state === "open" && this.queue === null) {
      this.socket!.shutdown();
      this.endIfBothDone();
    } else this.shutdownPending = true;
  }

  private endIfBothDone(): void {
    if (this.remoteFin && this._localFin && !this.shutdownPending && this._state === "open") this.socket!.end();
  }

  // ---- target → client ----

  /** Stop reading the target for `reason` (a PAUSE bit); reads resume when no reason is left. */
  hold(reason: number): void {
    if (this.pauseMask === 0) this.socket?.pause();
    this.pauseMask |= reason;
  }

  release(reason: number): void {
    if (!(this.pauseMask & reason)) return;
    this.pauseMask &= ~reason;
    if (this.pauseMask === 0 && this._state === "open") this.socket?.resume();
  }

  isHeld(reason: number): boolean {
    return (this.pauseMask & reason) !== 0;
  }

  /** Bytes from the target (also early bytes a pooled connection kept). */
  received(data: Uint8Array): void {
    if (this._state !== "open") return;
    this.down += data.length;
    this.owner.received(this, data);
  }

  private onEnd(): void {
    this.remoteFin = true;
    if (this._state !== "open") return;
    this.owner.remoteEnded(this);
    this.endIfBothDone();
  }

  // ---- idle ----

  /** How long no byte moved either way, as of `now` (the session sweeps every so often). */
  idleMs(now: number): number {
    return this.idle.idleMs(this.up + this.down, now);
  }

  // ---- ending ----

  /** The client closed it: write what is queued (bounded by the buffer cap and a timer), then FIN. */
  closeByClient(): void {
    if (this._state === "closed" || this._state === "closing") return;
    const wasOpen = this._state === "open";
    this.unstage(); // this turn's bytes come before the FIN
    this._state = "closing";
    clearTimeout(this.timer);
    if (!wasOpen || this.queue === null) return this.end({ kind: "closed", reason: "closed by client" }, "fin");
    this.timer = setTimeout(() => this.end({ kind: "closed", reason: "closed by client; target did not take queued bytes in time" }, "reset"), CLOSE_FLUSH_MS);
  }

  /** End now with an error the client has not heard yet (connect failure, limit, TLS, idle). */
  fail(code: ErrorCode, msg: string, reason = msg): void {
    this.end({ kind: "error", code, msg, reason }, "reset");
  }

  /** The policy refused where this stream was going: it never opened. */
  refuse(refusal: Decision): void {
    this.end({ kind: "denied", refusal, reason: `denied: ${refusal.rule}` }, "reset");
  }

  /** End now, quietly for the client (it already has `closed`, or the session is going away). */
  finish(reason: string): void {
    this.end({ kind: "closed", reason }, "reset");
  }

  private end(outcome: StreamOutcome, how: "fin" | "reset" | "gone"): void {
    if (this._state === "closed") return;
    // Staged bytes would have been written already without the batching: write them (or drop them, if the socket is gone).
    if (how !== "gone") this.unstage();
    else if (this.stage !== null) giveStage(this.stage);
    this.stage = null;
    this.staged = 0;
    this._state = "closed";
    clearTimeout(this.timer);
    this.dropQueue();
    const s = this.socket;
    if (s && how === "fin") s.end();
    else if (s && how === "reset") s.terminate();
    this.owner.ended(this, outcome);
  }

  /** Bun's close handler: the socket is gone. */
  private onClose(err?: Error): void {
    if (this._state === "closed") return;
    // After our shutdown(), Bun reports the peer's FIN as a plain close without running `end`
    // (docs/bun.md#half-close-needs-shutdown): it is still the target's half-close, and a
    // half_close client is owed its `end`.
    if (!err && this._localFin && !this.remoteFin && this._state === "open") {
      this.remoteFin = true;
      this.owner.remoteEnded(this);
    }
    const reason = err ? `socket error: ${err.message}` : this.remoteFin ? "target closed" : "connection closed";
    this.end({ kind: "closed", reason }, "gone");
  }

  private onConnectError(err: Error): void {
    if (this._state !== "connecting") return;
    // Bun collapses most connect failures into ECONNREFUSED (docs/bun.md#connect-errors-read-as-refused).
    const code = (err as { code?: string }).code;
    if (code === "ECONNREFUSED") this.fail("ECONNREFUSED", `connect ${this.where} refused`);
    else this.fail("EHOSTUNREACH", `connect ${this.where} failed: ${code ?? err.message}`);
  }

  private onTlsOpen(socket: Socket<TcpStream>): void {
    if (this._state !== "connecting") return void socket.terminate();
    this.socket = socket; // so a timeout can terminate a handshake that never finishes
  }

  private onHandshake(socket: Socket<TcpStream>, success: boolean, authError: Error | null): void {
    if (this._state !== "connecting") return void socket.terminate();
    if (!success || authError) {
      const why = authError ? `${(authError as { code?: string }).code ?? "error"}: ${authError.message}` : "handshake failed";
      return this.fail("ETLS", `TLS to ${formatHostPort(this._target.name ?? this._target.addr, this._target.port)} failed: ${why}`);
    }
    this.adopt(socket);
  }

  /** One handler object for every socket; the stream rides in socket.data (memory per stream). */
  static readonly handlers: SocketHandler<TcpStream> = {
    open(socket) {
      const s = socket.data;
      if (s._state !== "connecting") return void socket.terminate(); // timed out or closed meanwhile
      s.adopt(socket);
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
      socket.data.onConnectError(err);
    },
  };

  /** TLS: `open` fires at TCP connect, `handshake` after verification (docs/bun.md#tls-handshake-ordering). */
  static readonly tlsHandlers: SocketHandler<TcpStream> = {
    ...TcpStream.handlers,
    open(socket) {
      socket.data.onTlsOpen(socket);
    },
    handshake(socket, success, authError) {
      socket.data.onHandshake(socket, success, authError);
    },
  };
}

/** The same object as TcpStream.handlers, for modules that hand sockets over (listener, pool). */
export const tcpHandlers = TcpStream.handlers;
