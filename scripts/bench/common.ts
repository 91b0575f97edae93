// Shared by the bench orchestrator (scripts/bench.ts) and its child processes: the payload
// pattern, hashing, child-process plumbing and /proc readings. Loopback only.

export const KIB = 1024;
export const MIB = 1024 * 1024;
/** Upload chunk by default: one `send` frame / one socket.write per chunk (the bench's --chunk changes it). */
export const CHUNK = 64 * KIB;
/** The payload is this many distinct random chunks, cycled (reordering within 4 MiB is caught). */
export const POOL_CHUNKS = 64;
export const POOL_BYTES = CHUNK * POOL_CHUNKS;

let pool: Uint8Array | null = null;

/** 4 MiB of seeded pseudo-random bytes, identical in every process. */
export function pattern(): Uint8Array {
  if (pool) return pool;
  const p = new Uint8Array(POOL_BYTES);
  const w = new Uint32Array(p.buffer);
  let x = 0x9e3779b9;
  for (let i = 0; i < w.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    w[i] = x >>> 0;
  }
  return (pool = p);
}

/** Chunk `i` of `size` bytes of the cycled stream (i counts from 0; `size` divides POOL_BYTES). */
export function chunkAt(i: number, size = CHUNK): Uint8Array {
  const off = (i * size) % POOL_BYTES;
  return pattern().subarray(off, off + size);
}

/** sha256 of the first `total` bytes of the cycled pattern (what a correct transfer delivers). */
const expectedCache = new Map<number, string>();
export function expectedHash(total: number): string {
  const hit = expectedCache.get(total);
  if (hit) return hit;
  const h = new Bun.CryptoHasher("sha256");
  const p = pattern();
  for (let off = 0; off < total; off += POOL_BYTES) h.update(p.subarray(0, Math.min(POOL_BYTES, total - off)));
  const hex = h.digest("hex");
  expectedCache.set(total, hex);
  return hex;
}

/** VmRSS of a process in KiB, from /proc/<pid>/status. */
export function vmRssKiB(pid: number): number {
  const s = require("node:fs").readFileSync(`/proc/${pid}/status`, "utf8") as string;
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(s);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

/** A free loopback TCP port (bound, read, released). */
export function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

/** Line reader over a child's stdout. */
export class Lines {
  private buf = "";
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly dec = new TextDecoder();
  constructor(stream: ReadableStream<Uint8Array>) {
    this.reader = stream.getReader();
  }
  /** Next line, or rejects after `ms` / at EOF. */
  async next(ms: number, what: string): Promise<string> {
    const deadline = performance.now() + ms;
    for (;;) {
      const nl = this.buf.indexOf("\n");
      if (nl >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        return line;
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const r = await Promise.race([
        this.reader.read(),
        new Promise<"timeout">((res) => (timer = setTimeout(() => res("timeout"), left))),
      ]);
      clearTimeout(timer);
      if (r === "timeout") continue;
      if (r.done) throw new Error(`child exited while waiting for ${what}`);
      this.buf += this.dec.decode(r.value, { stream: true });
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Rejects with `what` after `ms`, so nothing in the bench can wait forever. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, rej) => (timer = setTimeout(() => rej(new Error(`${what()} (timed out after ${(ms / 1000).toFixed(0)} s)`)), ms))),
  ]).finally(() => clearTimeout(timer));
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) >> 1]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}
