// The bench's traffic engines, shared by every measure: an echo stream paced by un-echoed bytes
// (or by credit), a download sink, and the direct-TCP baseline's connect and write.
import type { Socket } from "bun";
import { CHUNK, chunkAt, expectedHash } from "./common.ts";

/**
 * One echo stream: writes chunks of the pattern (64 KiB unless told), keeps at most `maxInFlight` bytes
 * un-echoed (and, with flow control, never more than the credit allows), counts what comes back
 * and optionally hashes it.
 */
export class EchoFlow {
  sent = 0;
  recv = 0;
  private next = 0;
  private hasher: Bun.CryptoHasher | null;
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (e: Error) => void;
  write: (chunkIndex: number, chunk: Uint8Array) => void = () => {};
  gate: () => boolean = () => true;

  constructor(
    readonly total: number,
    readonly maxInFlight: number,
    verify: boolean,
    /** Bytes per write (a divisor of `total`). */
    readonly chunk = CHUNK,
  ) {
    this.hasher = verify ? new Bun.CryptoHasher("sha256") : null;
    this.done = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
  }

  pump(): void {
    const chunk = this.chunk;
    while (this.sent < this.total && this.sent - this.recv + chunk <= this.maxInFlight && this.gate()) {
      const i = this.next++;
      this.sent += chunk;
      this.write(i, chunkAt(i, chunk));
    }
  }

  data(d: Uint8Array): void {
    this.recv += d.length;
    this.hasher?.update(d);
    if (this.recv > this.total) return this.fail(`echo returned ${this.recv} bytes, more than the ${this.total} sent`);
    if (this.recv === this.total) {
      if (this.hasher) {
        const got = this.hasher.digest("hex");
        const want = expectedHash(this.total);
        if (got !== want) return this.fail(`echo corrupted: sha256 ${got.slice(0, 16)}… != expected ${want.slice(0, 16)}…`);
      }
      return this.resolve();
    }
    this.pump();
  }

  fail(msg: string): void {
    this.reject(new Error(msg));
  }
  describe(): string {
    return `${this.sent}/${this.total} sent, ${this.recv} echoed`;
  }
}

/** Receives a download of `total` bytes, optionally hashing it. */
export class DownloadFlow {
  recv = 0;
  private hasher: Bun.CryptoHasher | null;
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (e: Error) => void;
  constructor(
    readonly total: number,
    verify: boolean,
  ) {
    this.hasher = verify ? new Bun.CryptoHasher("sha256") : null;
    this.done = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
  }
  data(d: Uint8Array): void {
    this.recv += d.length;
    this.hasher?.update(d);
    if (this.recv > this.total) return this.fail(`download delivered ${this.recv} bytes, more than the ${this.total} asked`);
    if (this.recv === this.total) {
      if (this.hasher) {
        const got = this.hasher.digest("hex");
        if (got !== expectedHash(this.total)) return this.fail(`download corrupted: sha256 ${got.slice(0, 16)}… != expected`);
      }
      this.resolve();
    }
  }
  fail(msg: string): void {
    this.reject(new Error(msg));
  }
}

// ---- direct TCP (the baseline: the same flows over plain loopback sockets)

export interface DirectState {
  onData: (d: Uint8Array) => void;
  onDrain: () => void;
  onClose: (why: string) => void;
  queue: Uint8Array[];
}

export async function directConnect(port: number, st: Omit<DirectState, "queue">): Promise<Socket<DirectState>> {
  const s = await Bun.connect<DirectState>({
    hostname: "127.0.0.1",
    port,
    data: { ...st, queue: [] },
    socket: {
      data(s, d) {
        s.data.onData(d);
      },
      drain(s) {
        const q = s.data.queue;
        while (q.length) {
          const n = s.write(q[0]!);
          if (n < 0) return;
          if (n < q[0]!.length) return void (q[0] = q[0]!.subarray(n));
          q.shift();
        }
        s.data.onDrain();
      },
      close(s, err) {
        s.data.onClose(err ? `closed: ${err.message}` : "closed by peer");
      },
      error(s, err) {
        s.data.onClose(`error: ${err.message}`);
      },
    },
  });
  s.setNoDelay(true);
  return s;
}

/** Write everything: Bun's write() does not buffer, so keep the tail for drain (docs/bun.md#partial-writes). */
export function directWrite(s: Socket<DirectState>, d: Uint8Array): void {
  const q = s.data.queue;
  if (q.length) return void q.push(d);
  const n = s.write(d);
  if (n >= 0 && n < d.length) q.push(d.subarray(n));
}
