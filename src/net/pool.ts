// Connection pool (README.md#connection-pooling): ready, never-used plain-TCP connections to destinations sessions
// have recently connected to, and to the `[pool] warm` targets, so the next `connect` there
// skips the handshake.
//
// - Keyed by the canonical address and port the session's policy check already approved: the
//   pool never decides anything, it only answers "is there a ready socket for 1.2.3.4:80?".
// - A socket goes to exactly one stream and never comes back: a used connection
//   carries that session's protocol state.
// - At most `per_key` idle (or connecting) sockets per key, and POOL_MAX_SOCKETS in all, so a
//   client connecting to many destinations cannot make the server hoard descriptors.
// - Idle entries expire after `idle_secs`; a peer's FIN, reset or close drops the entry at once.
// - Bytes the peer sends before the socket is handed out (server-speaks-first protocols: SMTP,
//   SSH, FTP, POP3/IMAP banners, MySQL greetings) are kept, up to EARLY_BYTES_CAP, and delivered
//   first after hand-over: the client then sees exactly what a fresh connection would have
//   shown it. A peer that sends more than that unprompted is not a ready connection: dropped.
import type { Socket, SocketHandler } from "bun";
import type { Logger } from "../log.ts";
import { formatHostPort, splitHostPort } from "../policy/address.ts";
import { pass, type Cleared, type GatePolicy } from "./gate.ts";
import { TcpStream, tcpHandlers } from "./tcp-stream.ts";

/** Early (pre-hand-over) bytes kept per idle socket. */
export const EARLY_BYTES_CAP = 64 * 1024;
/** Idle plus connecting sockets across every key. */
export const POOL_MAX_SOCKETS = 1024;

class PoolEntry {
  socket: Socket<PoolData> | null = null;
  early: Uint8Array[] = [];
  earlyBytes = 0;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** connecting → idle → (taken | dead). */
  state: "connecting" | "idle" | "gone" = "connecting";
  constructor(
    readonly pool: ConnectionPool,
    readonly key: string,
  ) {}
}

type PoolData = PoolEntry | TcpStream;

/** Streams handed to a session without half-close: a target FIN ends them (see `end` below). */
const closeOnFin = new WeakSet<TcpStream>();

/** What the pool needs: its settings, the gate's policy for warm targets, and a logger. */
export interface PoolConfig {
  idleSecs: number;
  perKey: number;
  warm: string[];
  connectionTimeoutSecs: number;
  gate: GatePolicy;
  log: Logger;
}

export class ConnectionPool {
  private readonly idle = new Map<string, PoolEntry[]>();
  private readonly connecting = new Map<string, number>();
  private total = 0;
  private closed = false;
  private readonly idleMs: number;
  private readonly perKey: number;
  private warmTimer: ReturnType<typeof setInterval> | undefined;
  /** Settles when the first warm-up of `[pool] warm` has connected (or failed). */
  readonly warmed: Promise<void>;
  /** Look-ups answered with a ready connection, and without. */
  hits = 0;
  misses = 0;

  constructor(private readonly config: PoolConfig) {
    this.idleMs = config.idleSecs * 1000;
    this.perKey = config.perKey;
    const warm = config.warm;
    this.warmed = warm.length > 0 ? this.warm() : Promise.resolve();
    if (warm.length > 0) {
      // Expired warm entries are replaced, at most per_key connects per target per period.
      this.warmTimer = setInterval(() => void this.warm(), Math.max(1000, this.idleMs));
      this.warmTimer.unref?.();
    }
  }

  /** Idle sockets for addr:port (all keys when omitted). */
  size(addr?: string, port?: number): number {
    if (addr !== undefined && port !== undefined) return this.idle.get(formatHostPort(addr, port))?.length ?? 0;
    let n = 0;
    for (const l of this.idle.values()) n += l.length;
    return n;
  }

  /**
   * Hand a ready connection to `stream` (whose destination the session's policy already
   * approved). True: the stream is attached (and `connected` sent). False: a miss.
   */
  take(stream: TcpStream, to: Cleared, halfOpen: boolean): boolean {
    const key = formatHostPort(to.addr, to.port);
    const list = this.idle.get(key);
    let entry: PoolEntry | undefined;
    while (list && list.length > 0) {
      const e = list.pop()!; // the freshest: least likely to have been timed out by the peer
      if (e.state === "idle" && e.socket && e.socket.readyState === 1) {
        entry = e;
        break;
      }
      this.drop(e);
    }
    if (list && list.length === 0) this.idle.delete(key);
    if (!entry) {
      this.misses++;
      return false;
    }
    this.hits++;
    entry.state = "gone";
    this.total--;
    clearTimeout(entry.timer);
    const socket = entry.socket! as unknown as Socket<TcpStream>;
    // From here the shared pool handlers forward every event to the stream (they read
    // socket.data at call time; reassigning it is supported by Bun).
    (socket as unknown as { data: PoolData }).data = stream;
    if (!halfOpen) closeOnFin.add(stream);
    stream.adopt(socket, true, to);
    for (const chunk of entry.early) stream.received(chunk);
    entry.early = [];
    this.noteUse(to); // replace what was taken
    return true;
  }

  /** A session connected to a cleared target: keep one more ready connection there, within limits. */
  noteUse(to: Cleared): void {
    if (this.closed) return;
    const key = formatHostPort(to.addr, to.port);
    const have = (this.idle.get(key)?.length ?? 0) + (this.connecting.get(key) ?? 0);
    if (have >= this.perKey || this.total >= POOL_MAX_SOCKETS) return;
    this.open(key, to);
  }

  /** Resolve and policy-check every `[pool] warm` target, then top each up to per_key. */
  private async warm(): Promise<void> {
    const { gate, log } = this.config;
    await Promise.all(
      this.config.warm.map(async (w) => {
        const hp = splitHostPort(w);
        if (!hp || this.closed) return;
        // Warming is the server connecting on its own: through the same gate as any client.
        const v = await pass(gate, { op: "connect", host: hp.host, port: hp.port });
        if (this.closed) return;
        if (!v.ok) {
          const why = v.refused ? `denied by ${v.refused.rule}: ${v.refused.reason}` : v.msg;
          log.warn("pool warm target skipped", { target: w, reason: why });
          return;
        }
        const key = formatHostPort(v.value.addr, v.value.port);
        const have = (this.idle.get(key)?.length ?? 0) + (this.connecting.get(key) ?? 0);
        const opens: Promise<void>[] = [];
        for (let i = have; i < this.perKey && this.total < POOL_MAX_SOCKETS; i++) opens.push(this.open(key, v.value));
        await Promise.all(opens);
      }),
    );
  }

  private open(key: string, to: Cleared): Promise<void> {
    const entry = new PoolEntry(this, key);
    this.total++;
    this.connecting.set(key, (this.connecting.get(key) ?? 0) + 1);
    const secs = this.config.connectionTimeoutSecs;
    // Bun.connect has no connect timeout (docs/bun.md#no-connect-timeout): give up on our side; a late open is killed.
    entry.timer = setTimeout(() => this.connectDone(entry, null), secs * 1000);
    return Bun.connect<PoolData>({
      hostname: to.addr, // a canonical IP the gate cleared, never a name
      port: to.port,
      data: entry,
      allowHalfOpen: true, // the stream's session decides what a FIN means (see `end`)
      socket: poolHandlers,
    }).then(
      () => {},
      () => {}, // reported through connectError
    );
  }

  /** The connect finished: `socket` on success, null on failure or timeout. */
  connectDone(entry: PoolEntry, socket: Socket<PoolData> | null): void {
    if (entry.state !== "connecting") {
      socket?.terminate(); // timed out meanwhile
      return;
    }
    clearTimeout(entry.timer);
    const n = (this.connecting.get(entry.key) ?? 1) - 1;
    if (n > 0) this.connecting.set(entry.key, n);
    else this.connecting.delete(entry.key);
    if (socket === null || this.closed) {
      entry.state = "gone";
      this.total--;
      socket?.terminate();
      return;
    }
    entry.socket = socket;
    entry.state = "idle";
    socket.setNoDelay(true);
    let list = this.idle.get(entry.key);
    if (!list) this.idle.set(entry.key, (list = []));
    list.push(entry);
    entry.timer = setTimeout(() => this.drop(entry), this.idleMs);
    entry.timer.unref?.();
  }

  /** Data on an idle socket before hand-over: keep it (bounded) for the stream that gets it. */
  early(entry: PoolEntry, data: Uint8Array): void {
    if (entry.state !== "idle") return;
    entry.earlyBytes += data.length;
    if (entry.earlyBytes > EARLY_BYTES_CAP) return this.drop(entry);
    entry.early.push(data);
  }

  /** Expired, or dead (peer FIN, reset, close): out of the pool, socket closed. */
  drop(entry: PoolEntry): void {
    if (entry.state === "connecting") return this.connectDone(entry, null);
    if (entry.state !== "idle") return;
    entry.state = "gone";
    this.total--;
    clearTimeout(entry.timer);
    entry.early = [];
    const list = this.idle.get(entry.key);
    if (list) {
      const i = list.indexOf(entry);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.idle.delete(entry.key);
    }
    entry.socket?.terminate();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.warmTimer);
    for (const list of [...this.idle.values()]) for (const e of [...list]) this.drop(e);
    this.idle.clear();
  }
}

/** One handler set for every pooled socket: pool logic while idle, the stream's once handed over. */
const poolHandlers: SocketHandler<PoolData> = {
  open(socket) {
    const d = socket.data;
    if (d instanceof PoolEntry) d.pool.connectDone(d, socket);
  },
  data(socket, data) {
    const d = socket.data;
    if (d instanceof TcpStream) return tcpHandlers.data!(socket as unknown as Socket<TcpStream>, data);
    d.pool.early(d, data);
  },
  drain(socket) {
    if (socket.data instanceof TcpStream) tcpHandlers.drain!(socket as unknown as Socket<TcpStream>);
  },
  end(socket) {
    const d = socket.data;
    if (d instanceof PoolEntry) return d.pool.drop(d);
    tcpHandlers.end!(socket as unknown as Socket<TcpStream>);
    // Pool sockets are opened with allowHalfOpen before anyone knows the session; for a
    // session without half_close a target FIN ends the stream, as Bun does for its own sockets.
    if (closeOnFin.has(d) && d.state === "open") socket.end();
  },
  close(socket, err) {
    const d = socket.data;
    if (d instanceof PoolEntry) return d.pool.drop(d);
    tcpHandlers.close!(socket as unknown as Socket<TcpStream>, err);
  },
  error(socket, err) {
    const d = socket.data;
    if (d instanceof PoolEntry) return d.pool.drop(d);
    tcpHandlers.error!(socket as unknown as Socket<TcpStream>, err);
  },
  connectError(socket) {
    const d = socket.data;
    if (d instanceof PoolEntry) d.pool.connectDone(d, null);
  },
};
