// Test certificates made with `openssl` in a temp dir at run time (never checked in): a test
// CA, leaves it signs (good, wrong name, expired), a self-signed leaf and a leaf from a CA the
// server does not trust. Plus a TLS target on loopback that records what it saw.
import { flushQueue } from "./targets.ts";
import type { Socket, TCPSocketListener } from "bun";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface KeyPair {
  cert: string;
  key: string;
}

export interface TestPki {
  dir: string;
  /** The CA the server is told about (extraCaPem). */
  ca: KeyPair;
  /** Signed by `ca`: SAN DNS:localhost, DNS:wasmnet.test, DNS:*.wasmnet.test, IP:127.0.0.1, IP:::1. */
  good: KeyPair;
  /** Signed by `ca`, SAN DNS:other.test only. */
  otherName: KeyPair;
  /** Signed by `ca`, right names, validity 2020-01-01 … 2021-01-01. */
  expired: KeyPair;
  /** Self-signed, right names. */
  selfSigned: KeyPair;
  /** Signed by a CA nobody trusts, right names. */
  unknownCa: KeyPair;
  cleanup(): void;
}

const GOOD_SAN = "DNS:localhost,DNS:wasmnet.test,DNS:*.wasmnet.test,IP:127.0.0.1,IP:::1";

function run(dir: string, args: string[]): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr.toString()}`);
}

function read(dir: string, base: string): KeyPair {
  return { cert: readFileSync(join(dir, `${base}.crt`), "utf8"), key: readFileSync(join(dir, `${base}.key`), "utf8") };
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

function makeCa(dir: string, base: string, cn: string): void {
  run(dir, ["req", "-x509", ...EC, "-keyout", `${base}.key`, "-out", `${base}.crt`, "-days", "2", "-subj", `/CN=${cn}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
}

function leafExt(dir: string, base: string, san: string): string {
  const f = `${base}.ext`;
  writeFileSync(join(dir, f), `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`);
  return f;
}

function makeLeaf(dir: string, base: string, caBase: string, san: string, cn: string): void {
  run(dir, ["req", "-new", ...EC, "-keyout", `${base}.key`, "-out", `${base}.csr`, "-subj", `/CN=${cn}`]);
  run(dir, ["x509", "-req", "-in", `${base}.csr`, "-CA", `${caBase}.crt`, "-CAkey", `${caBase}.key`, "-CAcreateserial",
    "-out", `${base}.crt`, "-days", "2", "-sha256", "-extfile", leafExt(dir, base, san)]);
}

/** OpenSSL 3.0 has no `x509 -not_after`: `openssl ca` with explicit dates makes the expired leaf. */
function makeExpiredLeaf(dir: string, base: string, caBase: string, san: string): void {
  run(dir, ["req", "-new", ...EC, "-keyout", `${base}.key`, "-out", `${base}.csr`, "-subj", "/CN=wasmnet.test"]);
  writeFileSync(join(dir, "index.txt"), "");
  writeFileSync(join(dir, "serial"), "1000\n");
  writeFileSync(
    join(dir, "ca.cnf"),
    [
      "[ca]", "default_ca = test_ca", "[test_ca]", "dir = .", "database = index.txt", "serial = serial",
      "new_certs_dir = .", "default_md = sha256", "policy = any", "copy_extensions = none", "unique_subject = no",
      "x509_extensions = leaf", "[any]", "commonName = supplied",
      "[leaf]", "basicConstraints=CA:FALSE", "keyUsage=digitalSignature", "extendedKeyUsage=serverAuth", `subjectAltName=${san}`, "",
    ].join("\n"),
  );
  run(dir, ["ca", "-batch", "-config", "ca.cnf", "-cert", `${caBase}.crt`, "-keyfile", `${caBase}.key`, "-in", `${base}.csr`,
    "-out", `${base}.crt`, "-startdate", "20200101000000Z", "-enddate", "20210101000000Z", "-notext"]);
}

export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "wasmnet-pki-"));
  makeCa(dir, "ca", "wasmnet test CA");
  makeCa(dir, "rogue-ca", "wasmnet rogue CA");
  makeLeaf(dir, "good", "ca", GOOD_SAN, "wasmnet.test");
  makeLeaf(dir, "other", "ca", "DNS:other.test", "other.test");
  makeLeaf(dir, "unknown", "rogue-ca", GOOD_SAN, "wasmnet.test");
  makeExpiredLeaf(dir, "expired", "ca", GOOD_SAN);
  run(dir, ["req", "-x509", ...EC, "-keyout", "self.key", "-out", "self.crt", "-days", "2", "-subj", "/CN=wasmnet.test", "-addext", `subjectAltName=${GOOD_SAN}`]);
  return {
    dir,
    ca: read(dir, "ca"),
    good: read(dir, "good"),
    otherName: read(dir, "other"),
    expired: read(dir, "expired"),
    selfSigned: read(dir, "self"),
    unknownCa: read(dir, "unknown"),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface TlsTarget {
  port: number;
  listener: TCPSocketListener<TlsConn>;
  /** SNI names the server saw, one per handshake (null: none sent). */
  sni: (string | null)[];
  /** Application bytes received, over all connections. */
  received: number;
  /** Connections whose handshake completed on the server side. */
  handshakes: number;
  accepted: number;
  stop(): void;
}

interface TlsConn {
  q: Uint8Array[];
}

/**
 * A TLS server on loopback with the given certificate. `mode`: "echo" sends every byte back
 * (with backpressure), "greet" writes `greeting` once the handshake is done.
 */
export function tlsTarget(pair: KeyPair, opts: { hostname?: string; mode?: "echo" | "greet"; greeting?: string } = {}): TlsTarget {
  const mode = opts.mode ?? "echo";
  const flush = flushQueue;
  const t: TlsTarget = {
    port: 0,
    listener: null as never,
    sni: [],
    received: 0,
    handshakes: 0,
    accepted: 0,
    stop: () => t.listener.stop(true),
  };
  t.listener = Bun.listen<TlsConn>({
    hostname: opts.hostname ?? "127.0.0.1",
    port: 0,
    tls: { cert: pair.cert, key: pair.key },
    socket: {
      open(s) {
        s.data = { q: [] };
        t.accepted++;
      },
      handshake(s, success) {
        if (!success) return;
        t.handshakes++;
        const name = s.getServername() as string | undefined | false;
        t.sni.push(typeof name === "string" && name !== "" ? name : null);
        if (mode === "greet") s.write(opts.greeting ?? "hello from tls");
      },
      data(s, d) {
        t.received += d.length;
        if (mode !== "echo") return;
        s.data.q.push(d);
        if (s.data.q.length === 1) flush(s);
      },
      drain(s) {
        flush(s);
      },
      error() {},
    },
  });
  t.port = t.listener.port;
  return t;
}
