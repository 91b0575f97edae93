// Real target servers on loopback for the tests: echo, sink, source, silent.
import type { TCPSocketListener, Socket, udp } from "bun";

export interface Target {
  port: number;
  listener: TCPSocketListener<any>;
  sockets: Set<Socket<any>>;
  accepted: number;
  stop(): void;
}

/** Writes a socket's queue until the kernel is full; pauses reading meanwhile (echo backpressure). */
export function flushQueue(s: Socket<{ q: Uint8Array[] }>): void {
  const q = s.data.q;
  while (q.length) {
    const n = s.write(q[0]!);
    if (n < q[0]!.length) {
      if (n > 0) q[0] = q[0]!.subarray(n);
      s.pause();
      return;
    }
    q.shift();
  }
  s.resume();
}

/** An echo server that honours backpressure (queues what the client cannot take yet). */
export function echoServer(hostname = "127.0.0.1"): Target {
  const sockets = new Set<Socket<{ q: Uint8Array[] }>>();
  const t: Target = {
    port: 0,
    listener: null as never,
    sockets,
    accepted: 0,
    stop: () => {
      t.listener.stop(true);
    },
  };

  t.listener = Bun.listen<{ q: Uint8Array[] }>({
    hostname,
    port: 0,
    socket: {
      open(s) {
        s.data = { q: [] };
        sockets.add(s);
        t.accepted++;
      },
      data(s, d) {
        s.data.q.push(d);
        if (s.data.q.length === 1) flushQueue(s);
      },
      drain(s) {
        flushQueue(s);
      },
      close(s) {
        sockets.delete(s);
      },
      error() {},
    },
  });
  t.port = t.listener.port;
  return t;
}

/** Accepts and records everything; optionally never reads (paused). */
export function sinkServer(opts: { paused?: boolean; hostname?: string } = {}) {
  let received = 0;
  const sockets = new Set<Socket<undefined>>();
  let eofs = 0;
  const listener = Bun.listen({
    hostname: opts.hostname ?? "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        sockets.add(s);
        if (opts.paused) s.pause();
      },
      data(_s, d) {
        received += d.length;
      },
      end() {
        eofs++;
      },
      close(s) {
        sockets.delete(s);
      },
      error() {},
    },
  });
  return {
    port: listener.port,
    sockets,
    get received() {
      return received;
    },
    get eofs() {
      return eofs;
    },
    stop: () => listener.stop(true),
  };
}

/**
 * Sends `bytes` of deterministic data to each connection, honouring backpressure, then closes:
 * `pattern` repeated (byte i is pattern[i % chunk], also across partial writes).
 */
export function sourceServer(bytesOrPayload: number | Uint8Array, chunkSize = 64 * 1024) {
  const given = typeof bytesOrPayload !== "number";
  const pattern = given ? bytesOrPayload : makePayload(chunkSize, 7);
  const bytes = given ? pattern.length : bytesOrPayload;
  const chunk = pattern.length;
  type St = { left: number };
  const write = (s: Socket<St>) => {
    while (s.data.left > 0) {
      const at = (bytes - s.data.left) % chunk;
      const n = Math.min(chunk - at, s.data.left);
      const w = s.write(pattern.subarray(at, at + n));
      if (w <= 0) return;
      s.data.left -= w;
      if (w < n) return;
    }
    s.end();
  };
  const listener = Bun.listen<St>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { left: bytes };
        write(s);
      },
      drain: write,
      data() {},
      error() {},
    },
  });
  return { port: listener.port, stop: () => listener.stop(true), pattern };
}

export interface Peer {
  port: number;
  socket: udp.Socket<"uint8array">;
  /** Datagrams received: payload and the sender's address and port. */
  got: { data: Uint8Array; addr: string; port: number }[];
  stop(): void;
}

/** A UDP peer on loopback; `echo` sends every datagram back to its sender. */
export async function udpPeer(hostname: string, echo = true): Promise<Peer> {
  const got: Peer["got"] = [];
  const socket = await Bun.udpSocket({
    hostname,
    port: 0,
    binaryType: "uint8array",
    socket: {
      data(s, data, port, addr) {
        got.push({ data, addr, port });
        if (echo) s.send(data, port, addr);
      },
      error() {}, // ICMP refusals after a relay socket closed
    },
  });
  return { port: socket.port, socket, got, stop: () => socket.close() };
}

export interface FloodSource {
  port: number;
  /** Bytes sent so far. */
  sentBytes(): number;
  stop(): void;
}

/**
 * A UDP source on 127.0.0.1 that, once the first datagram arrives (the relay saying hello),
 * sends `datagram`-byte datagrams back to its sender at `bytesPerSec` for `ms`. With `burstMs`
 * it sends each `burstMs` of its share at once, otherwise every 10 ms.
 * Paced by elapsed time, not by tick count: a late timer (a loaded machine) catches up, so what
 * is offered over the run is `bytesPerSec` × `ms`, whatever the timer's accuracy.
 */
export async function udpFloodSource(opts: { datagram: number; bytesPerSec: number; ms: number; burstMs?: number; fill?: number }): Promise<FloodSource> {
  const payload = new Uint8Array(opts.datagram).fill(opts.fill ?? 0x42);
  const perSec = opts.bytesPerSec / opts.datagram;
  const tick = opts.burstMs ?? 10;
  let sent = 0;
  let timer: ReturnType<typeof setInterval> | undefined;
  let stopped = false;
  const socket: udp.Socket<"uint8array"> = await Bun.udpSocket({
    hostname: "127.0.0.1",
    port: 0,
    binaryType: "uint8array",
    socket: {
      data(s, _d, port, addr) {
        if (timer || stopped) return;
        const start = performance.now();
        const due = (elapsed: number) => Math.floor((perSec * (opts.burstMs ? Math.floor(elapsed / tick) * tick : elapsed)) / 1000);
        timer = setInterval(() => {
          const elapsed = Math.min(performance.now() - start, opts.ms);
          for (const n = due(elapsed); sent < n; sent++) s.send(payload, port, addr);
          if (elapsed >= opts.ms) clearInterval(timer);
        }, tick);
      },
      error() {},
    },
  });
  return {
    port: socket.port,
    sentBytes: () => sent * opts.datagram,
    stop: () => {
      stopped = true;
      clearInterval(timer);
      socket.close();
    },
  };
}

/** A UDP echo server. */
export const udpEcho = (hostname = "127.0.0.1") => udpPeer(hostname, true);

/** Deterministic pseudo-random bytes (xorshift), so two sides can agree on content. */
export function makePayload(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export function sha256(b: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(b).digest("hex");
}

/** A port with nothing listening on it (bound then released). */
export function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}
