// Targets for the client tests (browser and Bun): a TLS echo server with a throw-away CA, a UDP
// echo server, a duplex transfer server and a flooding server. All on 127.0.0.1.
import { flushQueue } from "./targets.ts";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket, TCPSocketListener } from "bun";

// ---- deterministic data, the same in Bun and in the page ----

/** Source of a generator of deterministic bytes; evaluated in Bun and injected into pages. */
export const GEN_SRC = `function wasmnetTestBytes(n, seed) {
  const out = new Uint8Array(n);
  const words = new Uint32Array(out.buffer, 0, n >>> 2);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    words[i] = x;
  }
  for (let i = words.length * 4; i < n; i++) out[i] = i & 0xff;
  return out;
}`;
export const testBytes: (n: number, seed: number) => Uint8Array = new Function(`return ${GEN_SRC}`)();

export function sha256hex(b: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(b).digest("hex");
}

// ---- TLS ----

export interface TestPki {
  caPem: string;
  certPem: string;
  keyPem: string;
  /** A self-signed leaf for localhost that no CA vouches for. */
  rogueCertPem: string;
  rogueKeyPem: string;
}

function openssl(cwd: string, args: string[]): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed:\n${r.stderr.toString()}`);
}

/** A throw-away CA and a leaf for DNS:localhost, IP:127.0.0.1, IP:::1 signed by it (made with openssl). */
export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "wasmnet-pki-"));
  try {
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(dir, ["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=wasmnet test CA",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(dir, ["req", ...ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost"]);
    writeFileSync(
      join(dir, "leaf.ext"),
      "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    );
    openssl(dir, ["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext"]);
    openssl(dir, ["req", "-x509", ...ec, "-keyout", "rogue.key", "-out", "rogue.pem", "-days", "2", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]);
    const f = (n: string) => readFileSync(join(dir, n), "utf8");
    return { caPem: f("ca.pem"), certPem: f("leaf.pem"), keyPem: f("leaf.key"), rogueCertPem: f("rogue.pem"), rogueKeyPem: f("rogue.key") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

type Q = { q: Uint8Array[] };

/** A TLS echo server on 127.0.0.1 presenting `cert`, honouring backpressure. */
export function tlsEchoServer(certPem: string, keyPem: string): { port: number; stop(): void } {
  const flush = flushQueue;
  const listener: TCPSocketListener<Q> = Bun.listen<Q>({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: certPem, key: keyPem },
    socket: {
      open(s) {
        s.data = { q: [] };
      },
      data(s, d) {
        s.data.q.push(new Uint8Array(d));
        if (s.data.q.length === 1) flush(s);
      },
      drain: flush,
      error() {},
    },
  });
  return { port: listener.port, stop: () => listener.stop(true) };
}

// ---- UDP ----

/** A UDP echo server on 127.0.0.1: every datagram goes back to its sender, prefixed with `tag`. */
export async function udpEchoServer(tag = ""): Promise<{ port: number; received: number; stop(): void }> {
  const prefix = new TextEncoder().encode(tag);
  const state = { port: 0, received: 0, stop: () => {} };
  const sock = await Bun.udpSocket({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(s, buf, port, addr) {
        state.received++;
        const out = new Uint8Array(prefix.length + buf.length);
        out.set(prefix);
        out.set(buf, prefix.length);
        s.send(out, port, addr);
      },
    },
  });
  state.port = sock.port;
  state.stop = () => sock.close();
  return state;
}

// ---- bulk transfers ----

export interface DuplexResult {
  /** Bytes received from the client and their SHA-256, once the client half-closed. */
  upload: Promise<{ bytes: number; sha256: string }>;
}

/**
 * On each connection: sends `down` (honouring backpressure) while hashing what arrives; once the
 * client half-closes (FIN) and `down` is all written, half-closes too.
 */
export function duplexServer(down: Uint8Array, chunk = 256 * 1024): { port: number; next(): DuplexResult; stop(): void } {
  type St = { off: number; hasher: Bun.CryptoHasher; up: number; gotFin: boolean; ended: boolean; done: (r: { bytes: number; sha256: string }) => void };
  const results: DuplexResult[] = [];
  const resolvers: ((r: { bytes: number; sha256: string }) => void)[] = [];
  const newResult = () => {
    let resolve!: (r: { bytes: number; sha256: string }) => void;
    const upload = new Promise<{ bytes: number; sha256: string }>((r) => (resolve = r));
    results.push({ upload });
    resolvers.push(resolve);
  };
  let handed = 0;
  let opened = 0;
  const maybeEnd = (s: Socket<St>) => {
    if (s.data.gotFin && s.data.off >= down.length && !s.data.ended) {
      s.data.ended = true;
      s.end();
    }
  };
  const write = (s: Socket<St>) => {
    while (s.data.off < down.length) {
      const n = Math.min(chunk, down.length - s.data.off);
      const w = s.write(down.subarray(s.data.off, s.data.off + n));
      if (w > 0) s.data.off += w;
      if (w < n) return;
    }
    maybeEnd(s);
  };
  const listener = Bun.listen<St>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      open(s) {
        if (resolvers.length <= opened) newResult();
        const done = resolvers[opened++]!;
        s.data = { off: 0, hasher: new Bun.CryptoHasher("sha256"), up: 0, gotFin: false, ended: false, done };
        write(s);
      },
      data(s, d) {
        s.data.up += d.length;
        s.data.hasher.update(d);
      },
      drain: write,
      end(s) {
        s.data.gotFin = true;
        s.data.done({ bytes: s.data.up, sha256: s.data.hasher.digest("hex") });
        maybeEnd(s);
      },
      close(s) {
        if (!s.data.gotFin) s.data.done({ bytes: s.data.up, sha256: "closed before FIN" });
      },
      error() {},
    },
  });
  return {
    port: listener.port,
    next() {
      if (results.length <= handed) newResult();
      return results[handed++]!;
    },
    stop: () => listener.stop(true),
  };
}

/** Never reads; sends a repeating pattern as fast as the connection takes it, until closed. */
export function floodServer(): { port: number; stop(): void } {
  const pattern = testBytes(256 * 1024, 9);
  const write = (s: Socket<undefined>) => {
    for (;;) {
      const w = s.write(pattern);
      if (w < pattern.length) return;
    }
  };
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.pause();
        write(s);
      },
      drain: write,
      data() {},
      error() {},
    },
  });
  return { port: listener.port, stop: () => listener.stop(true) };
}
