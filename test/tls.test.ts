// connect_tls end to end: real TLS targets on loopback with certificates made by openssl at run
// time, a real DNS server on loopback so names (and SNI) are what the client asked for.
// Without openssl every test here is skipped (or fails, where CI requires openssl).
import { afterAll, beforeAll, expect, test } from "bun:test";
import tls from "node:tls";
import { dnsServerResolver } from "../src/net/resolve.ts";
import { TestClient, echoTransfer } from "./helpers/client.ts";
import { dnsServer, type DnsServer } from "./helpers/dns-server.ts";
import { startServer } from "./helpers/server.ts";
import { echoServer, makePayload } from "./helpers/targets.ts";
import { needing } from "./helpers/components.ts";
import { makePki, tlsTarget, type TestPki, type TlsTarget } from "./helpers/tls.ts";
import { waitFor } from "./helpers/wait.ts";

const withOpenssl = needing("openssl");

let pki: TestPki;
let dns: DnsServer;
let srv: Awaited<ReturnType<typeof startServer>>;
const targets: TlsTarget[] = [];

function target(kind: keyof Omit<TestPki, "dir" | "cleanup" | "ca">, opts: Parameters<typeof tlsTarget>[1] = {}): TlsTarget {
  const t = tlsTarget(pki[kind], opts);
  targets.push(t);
  return t;
}

beforeAll(async () => {
  if (!withOpenssl.available) return;
  pki = makePki();
  dns = await dnsServer({ "wasmnet.test": ["127.0.0.1"], "a.wasmnet.test": ["127.0.0.1"], "other.test": ["127.0.0.1"] });
  srv = await startServer({ noPolicy: true, extraCaPem: [pki.ca.cert], resolver: dnsServerResolver([dns.address]) });
});
afterAll(async () => {
  if (!withOpenssl.available) return;
  await srv.stop();
  for (const t of targets) t.stop();
  dns.stop();
  pki.cleanup();
});

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
for (const framing of ["json", "binary"] as const) withOpenssl.describe(`${framing} framing`, () => {
  test("a certificate from the extra CA verifies; SNI is the name asked; echo works", async () => {
    const t = target("good");
    const c = await TestClient.open(srv.wsUrl, framing);
    expect(await c.connect(1, "wasmnet.test", t.port, "connect_tls")).toEqual({ ev: "connected", id: 1 });
    c.send({ op: "send", id: 1, data: enc("over tls") });
    await c.waitBytes(1, 8);
    expect(dec(c.received(1))).toBe("over tls");
    expect(t.sni).toEqual(["wasmnet.test"]);
    // A wildcard SAN matches a sub-name, and SNI follows the name asked.
    expect(await c.connect(2, "a.wasmnet.test", t.port, "connect_tls")).toEqual({ ev: "connected", id: 2 });
    await waitFor(() => t.sni.length === 2, "the target's second handshake"); // the server's side can finish after the client's
    expect(t.sni).toEqual(["wasmnet.test", "a.wasmnet.test"]);
    c.send({ op: "close", id: 1 });
    expect(await c.next(1)).toEqual({ ev: "closed", id: 1 });
    c.close();
  });

  test("self-signed certificate: ETLS, and no plaintext crosses in either direction", async () => {
    const t = target("selfSigned", { mode: "greet", greeting: "server secret" });
    const c = await TestClient.open(srv.wsUrl, framing);
    // Sent before the handshake: queued, and must be dropped when verification fails.
    c.send({ op: "connect_tls", id: 1, addr: "wasmnet.test", port: t.port });
    c.send({ op: "send", id: 1, data: enc("client secret") });
    const e = await c.next(1);
    expect(e).toMatchObject({ ev: "error", id: 1, code: "ETLS" });
    expect((e as { msg: string }).msg).toContain("wasmnet.test");
    expect((e as { msg: string }).msg).toContain("SELF_SIGNED");
    await Bun.sleep(100); // nothing may arrive late: give stray bytes or events 100 ms to show up
    expect(t.received).toBe(0);
    expect(c.receivedBytes(1)).toBe(0);
    expect(c.events.filter((ev) => ev.id === 1)).toEqual([]); // nothing after the error (no closed, no connected)
    c.close();
  });
});

withOpenssl.test("the extra CA is added to the public roots, not substituted for them", async () => {
  const t = target("good");
  const seen: { tls?: { ca?: string[] } }[] = [];
  const original = Bun.connect;
  // Observe the options wasmnet hands to Bun.connect (the connection itself is real).
  (Bun as { connect: unknown }).connect = (o: (typeof seen)[number]) => {
    seen.push(o);
    return original(o as never);
  };
  try {
    const c = await TestClient.open(srv.wsUrl);
    expect((await c.connect(1, "wasmnet.test", t.port, "connect_tls")).ev).toBe("connected");
    c.close();
  } finally {
    (Bun as { connect: unknown }).connect = original;
  }
  expect(seen.length).toBe(1);
  const ca = seen[0]!.tls?.ca ?? [];
  expect(tls.rootCertificates.length).toBeGreaterThan(100);
  const cas = new Set(ca);
  expect(tls.rootCertificates.every((r) => cas.has(r))).toBe(true);
  expect(cas.has(pki.ca.cert)).toBe(true);
});

withOpenssl.test("a server without the extra CA refuses the same certificate (ETLS)", async () => {
  const t = target("good");
  const plain = await startServer({ noPolicy: true, resolver: dnsServerResolver([dns.address]) });
  try {
    const c = await TestClient.open(plain.wsUrl);
    expect(await c.connect(1, "wasmnet.test", t.port, "connect_tls")).toMatchObject({ ev: "error", code: "ETLS" });
    c.close();
  } finally {
    await plain.stop();
  }
});

withOpenssl.test("certificate from an unknown CA: ETLS", async () => {
  const t = target("unknownCa");
  const c = await TestClient.open(srv.wsUrl);
  const e = await c.connect(1, "wasmnet.test", t.port, "connect_tls");
  expect(e).toMatchObject({ ev: "error", id: 1, code: "ETLS" });
  expect((e as { msg: string }).msg).toContain("UNABLE_TO_VERIFY");
  expect(t.received).toBe(0);
  c.close();
});

withOpenssl.test("certificate for another name: ETLS (the name asked is what is verified)", async () => {
  const t = target("otherName", { mode: "greet" });
  const c = await TestClient.open(srv.wsUrl);
  c.send({ op: "connect_tls", id: 1, addr: "wasmnet.test", port: t.port });
  c.send({ op: "send", id: 1, data: enc("GET / HTTP/1.0\r\n\r\n") });
  const e = await c.next(1);
  expect(e).toMatchObject({ ev: "error", id: 1, code: "ETLS" });
  expect((e as { msg: string }).msg).toContain("ALTNAME");
  // The same server is fine when asked by the name its certificate carries.
  expect(await c.connect(2, "other.test", t.port, "connect_tls")).toEqual({ ev: "connected", id: 2 });
  await c.waitBytes(2, 1);
  await Bun.sleep(50); // nothing may arrive late: give stream 1's bytes 50 ms to (wrongly) reach the target
  expect(t.received).toBe(0);
  expect(c.receivedBytes(1)).toBe(0);
  c.close();
});

withOpenssl.test("expired certificate: ETLS", async () => {
  const t = target("expired");
  const c = await TestClient.open(srv.wsUrl);
  const e = await c.connect(1, "wasmnet.test", t.port, "connect_tls");
  expect(e).toMatchObject({ ev: "error", id: 1, code: "ETLS" });
  expect((e as { msg: string }).msg).toContain("EXPIRED");
  c.close();
});

withOpenssl.test("a plain TCP server on the TLS port: ETLS, no downgrade", async () => {
  const echo = echoServer();
  try {
    const c = await TestClient.open(srv.wsUrl);
    c.send({ op: "connect_tls", id: 1, addr: "wasmnet.test", port: echo.port });
    c.send({ op: "send", id: 1, data: enc("plaintext") });
    expect(await c.next(1)).toMatchObject({ ev: "error", id: 1, code: "ETLS" });
    expect(c.receivedBytes(1)).toBe(0);
    c.close();
  } finally {
    echo.stop();
  }
});

withOpenssl.test("IP literal targets are verified against IP SANs, without an SNI", async () => {
  const good = target("good");
  const good6 = target("good", { hostname: "::1" });
  const noIpSan = target("otherName");
  const c = await TestClient.open(srv.wsUrl);
  expect(await c.connect(1, "127.0.0.1", good.port, "connect_tls")).toEqual({ ev: "connected", id: 1 });
  expect(await c.connect(2, "::1", good6.port, "connect_tls")).toEqual({ ev: "connected", id: 2 });
  expect(await c.connect(3, "127.0.0.1", noIpSan.port, "connect_tls")).toMatchObject({ ev: "error", id: 3, code: "ETLS" });
  // SNI carries host names only (RFC 6066): an IP literal is not sent (Bun would send it by default).
  await waitFor(() => good.sni.length === 1 && good6.sni.length === 1, "both targets' handshakes");
  expect([good.sni, good6.sni]).toEqual([[null], [null]]);
  c.send({ op: "send", id: 2, data: enc("v6") });
  await c.waitBytes(2, 2);
  expect(dec(c.received(2))).toBe("v6");
  c.close();
});

withOpenssl.test("16 MiB through TLS each way intact", async () => {
  const t = target("good");
  const c = await TestClient.open(srv.wsUrl, "binary");
  c.keepEvents = false;
  expect(await c.connect(1, "wasmnet.test", t.port, "connect_tls")).toEqual({ ev: "connected", id: 1 });
  const total = 16 * 1024 * 1024;
  const r = await echoTransfer(c, 1, total, (n) => makePayload(60_000, n + 1));
  expect(r.got).toBe(total);
  expect(r.down).toBe(r.up);
  expect(t.received).toBe(total);
  c.close();
}, 120_000);

withOpenssl.test("a handshake that never completes is ETIMEDOUT after connection_timeout_secs", async () => {
  const { parsePolicy } = await import("../src/policy/load.ts");
  const { sinkServer } = await import("./helpers/targets.ts");
  const mute = sinkServer(); // accepts TCP, never speaks TLS
  const s = await startServer({
    policy: parsePolicy(`[network]\ndeny = []\nallow = ["*"]\nconnection_timeout_secs = 1\n`, "tls-test.toml"),
    extraCaPem: [pki.ca.cert],
  });
  try {
    const c = await TestClient.open(s.wsUrl);
    const started = Date.now();
    const e = await c.connect(1, "127.0.0.1", mute.port, "connect_tls");
    expect(e).toMatchObject({ ev: "error", id: 1, code: "ETIMEDOUT" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900); // the timeout is the feature: never early (no upper bound: load only delays)
    await waitFor(() => mute.sockets.size === 0, "the half-open TLS socket to close");
    expect(mute.sockets.size).toBe(0); // the half-open TLS socket was closed
    c.close();
  } finally {
    await s.stop();
    mute.stop();
  }
});

withOpenssl.test("version 2 over TLS: credits, shutdown reaches the target, its close is end then closed", async () => {
  let eof = false;
  const t = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    tls: { cert: pki.good.cert, key: pki.good.key },
    socket: {
      data: (s, d) => void s.write(d),
      end: (s) => {
        eof = true;
        setTimeout(() => s.end("tls bye"), 20);
      },
      error() {},
    },
  });
  try {
    const c = await TestClient.open(srv.wsUrl, "binary");
    c.send({ op: "hello", id: 0, version: 2, features: ["flow", "half_close"] });
    expect((await c.wait((e) => e.ev === "hello")).ev).toBe("hello");
    let credited = 0;
    c.onEvent = (e) => void (e.ev === "credit" && (credited += e.bytes));
    expect(await c.connect(1, "wasmnet.test", t.port, "connect_tls")).toEqual({ ev: "connected", id: 1 });
    c.send({ op: "send", id: 1, data: enc("ping") });
    await c.waitBytes(1, 4);
    expect(credited).toBe(4);
    c.send({ op: "shutdown", id: 1 });
    await waitFor(() => eof, "the target to see end of stream");
    expect(eof).toBe(true);
    expect(await c.next(1)).toEqual({ ev: "end", id: 1 });
    expect(await c.next(1)).toEqual({ ev: "closed", id: 1 });
    expect(dec(c.received(1))).toBe("pingtls bye");
    c.close();
  } finally {
    t.stop(true);
  }
});

withOpenssl.test("a target that hangs up during the handshake: ETLS, never connected or closed", async () => {
  for (const how of ["end", "terminate"] as const) {
    const rude = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { open: (s) => void (how === "end" ? s.end() : s.terminate()), data() {}, error() {} },
    });
    try {
      const c = await TestClient.open(srv.wsUrl);
      expect(await c.connect(1, "wasmnet.test", rude.port, "connect_tls")).toMatchObject({ ev: "error", id: 1, code: "ETLS" });
      await Bun.sleep(30); // nothing may follow the error: give a stray connected/closed 30 ms to show up
      expect(c.events).toEqual([]);
      c.close();
    } finally {
      rude.stop(true);
    }
  }
});
