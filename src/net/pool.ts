// Connection pool (SPEC §7): ready, never-used plain-TCP connections to destinations sessions
// have recently connected to, and to the `[pool] warm` targets, so the next `connect` there
// skips the handshake.
//
// - Keyed by the canonical address and port the session's policy check already approved: the
//   pool never decides anything, it only answers "is there a ready socket for 1.2.3.4:80?".
// - A socket goes to exactly one stream and never comes back (SPEC §7): a used connection
//   carries that session's protocol state.
// - At most `per_key` idle (or connecting) sockets per key, and POOL_MAX_SOCKETS in all, so a
//   client connecting to many destinations cannot make the server hoard descriptors.
// - Idle entries expire after `idle_secs`; a peer's FIN, reset or close drops the entry at once.
// - Bytes the peer sends before the socket is handed out (server-speaks-first protocols: SMTP,
//   SSH, FTP, POP3/IMAP banners, MySQL greetings) are kept, up to EARLY_BYTES_CAP, and delivered
//   first after hand-over: the client then sees exactly what a fresh connection would have
//   shown it. A peer that sends more than that unprompted is not a ready connection: dropped.
import type { Socket, SocketHandler } from "bun";
import { splitHostPort } from "../policy/address.ts";
import type { SessionContext } from "../session/context.ts";
import { pickDestination } from "./destination.ts";
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

function keyOf(addr: string, port: number): string {
  return addr.includes(":") ? `[${addr}]:${port}` : `${addr}:${port}`;
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

  constructor(readonly ctx: SessionContext) {
    this.idleMs = ctx.policy.pool.idleSecs * 1000;
    this.perKey = ctx.policy.pool.perKey;
    const warm = ctx.policy.pool.warm;
    this.warmed = warm.length > 0 ? this.warm() : Promise.resolve();
    if (warm.length > 0) {
      // Expired warm entries are replaced, at most per_key connects per target per period.
      this.warmTimer = setInterval(() => void this.warm(), Math.max(1000, this.idleMs));
      this.warmTimer.unref?.();
    }
  }

  /** Idle sockets for addr:port (all keys when omitted). */
  size(addr?: string, port?: number): number {
    if (addr !== undefined && port !== undefined) return this.idle.get(keyOf(addr, port))?.length ?? 0;
    let n = 0;
    for (const l of this.idle.values()) n += l.length;
    return n;
  }

  /**
   * Hand a ready connection to `stream` (whose destination the session's policy already
   * approved). True: the stream is attached (and `connected` sent). False: a miss.
   */
  take(stream: TcpStream, addr: string, port: number, halfOpen: boolean): boolean {
    const key = keyOf(addr, port);
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
      this.ctx.metrics.poolMisses++;
      return false;
    }
    this.ctx.metrics.poolHits++;
    entry.state = "gone";
    this.total--;
    clearTimeout(entry.timer);
    const socket = entry.socket! as unknown as Socket<TcpStream>;
    // From here the shared pool handlers forward every event to the stream (they read
    // socket.data at call time; reassigning it is supported by Bun).
    (socket as unknown as { data: PoolData }).data = stream;
    if (!halfOpen) closeOnFin.add(stream);
    stream.attach(socket);
    for (const chunk of entry.early) stream.received(chunk);
    entry.early = [];
    this.noteUse(addr, port); // replace what was taken
    return true;
  }

  /** A session connected to addr:port: keep one more ready connection there, within limits. */
  noteUse(addr: string, port: number): void {
    if (this.closed) return;
    const key = keyOf(addr, port);
    const have = (this.idle.get(key)?.length ?? 0) + (this.connecting.get(key) ?? 0);
    if (have >= this.perKey || this.total >= POOL_MAX_SOCKETS) return;
    this.open(key, addr, port);
  }

  /** Resolve and policy-check every `[pool] warm` target, then top each up to per_key. */
  private async warm(): Promise<void> {
    const { policy, resolver, dnsTimeoutMs, log } = this.ctx;
    await Promise.all(
      policy.pool.warm.map(async (w) => {
        const hp = splitHostPort(w);
        if (!hp || this.closed) return;
        const dest = await pickDestination(policy.rules, resolver, dnsTimeoutMs, hp.host, hp.port);
        if (this.closed) return;
        if (!dest.ok) {
          const why = dest.denied ? `denied by ${dest.denied.rule}: ${dest.denied.reason}` : dest.msg;
          log.warn("pool warm target skipped", { target: w, reason: why });
          return;
        }
        const key = keyOf(dest.addr, dest.port);
        const have = (this.idle.get(key)?.length ?? 0) + (this.connecting.get(key) ?? 0);
        const opens: Promise<void>[] = [];
        for (let i = have; i < this.perKey && this.total < POOL_MAX_SOCKETS; i++) opens.push(this.open(key, dest.addr, dest.port));
        await Promise.all(opens);
      }),
    );
  }

  private open(key: string, addr: string, port: number): Promise<void> {
    const entry = new PoolEntry(this, key);
    this.total++;
    this.connecting.set(key, (this.connecting.get(key) ?? 0) + 1);
    const secs = this.ctx.policy.connectionTimeoutSecs;
    // Bun.connect has no timeout (BUN-NOTES §2.7): give up on our side; a late open is killed.
    entry.timer = setTimeout(() => this.connectDone(entry, null), secs * 1000);
    return Bun.connect<PoolData>({
      hostname: addr, // a canonical IP the policy approved, never a name
      port,
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
