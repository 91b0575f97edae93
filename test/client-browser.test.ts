// The browser client in real headless Chromium (Debian's /usr/bin/chromium via playwright-core),
// against a real wasmnet server and real targets on 127.0.0.1. Every test runs in both framings.
// Without /usr/bin/chromium (or openssl, for the test CA) every test here is skipped, with a loud
// warning — or fails, naming what is missing, where CI requires them.
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { createToken } from "../src/auth/issue.ts";
import { createServer, type WasmnetServer } from "../src/index.ts";
import { silentLogger } from "../src/log.ts";
import { launchBrowser, openPage, unhandledIn, type Browser, type PageProblems } from "./helpers/browser.ts";
import {
  duplexServer,
  floodServer,
  GEN_SRC,
  makePki,
  sha256hex,
  testBytes,
  tlsEchoServer,
  udpEchoServer,
  type TestPki,
} from "./helpers/client-targets.ts";
import { needing } from "./helpers/components.ts";
import { echoServer, freePort } from "./helpers/targets.ts";
import { waitFor } from "./helpers/wait.ts";

const browserNeeds = needing("chromium", "openssl");
const it = browserNeeds.test;

const MiB = 1 << 20;
const BIG = 50 * MiB;
/** The client's default largest payload per send message. */
const CHUNK = 64 * 1024;

// Helpers installed in every page: the shared byte generator and a SHA-256 of a list of chunks.
const PAGE_HELPERS = `
window.wasmnetTestBytes = (${GEN_SRC});
window.sha256hexOf = async (parts) => {
  let n = 0; for (const p of parts) n += p.length;
  const all = new Uint8Array(n); let o = 0; for (const p of parts) { all.set(p, o); o += p.length; }
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return { bytes: n, sha256: Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("") };
};
`;

let pki: TestPki;
let srv: WasmnetServer;
let policySrv: WasmnetServer;
let browser: Browser;
let page: Page;
let problems: PageProblems;
let echo: ReturnType<typeof echoServer>;
let tlsEcho: ReturnType<typeof tlsEchoServer>;
let rogueTls: ReturnType<typeof tlsEchoServer>;
let udpA: Awaited<ReturnType<typeof udpEchoServer>>;
let udpB: Awaited<ReturnType<typeof udpEchoServer>>;

const wsUrl = (s: WasmnetServer) => `ws://127.0.0.1:${s.port}/`;
const clientUrl = () => `http://127.0.0.1:${srv.port}/wasmnet-client.js`;

/** Bun dials a port (the page's listener), sends `text`, and returns what comes back. */
async function dial(port: number, text: string): Promise<string> {
  const want = new TextEncoder().encode(text).length;
  let got = "";
  return await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dial ${port}: no echo within 10 s (got "${got}")`)), 10_000);
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(s) {
          s.write(text);
        },
        data(s, d) {
          got += new TextDecoder().decode(d);
          if (new TextEncoder().encode(got).length >= want) {
            clearTimeout(timer);
            s.end();
            resolve(got);
          }
        },
        connectError(_s, e) {
          clearTimeout(timer);
          reject(e);
        },
        error() {},
      },
    }).catch(reject);
  });
}

async function expectNoPageProblems(p: Page = page, pr: PageProblems = problems): Promise<void> {
  expect(await unhandledIn(p)).toEqual([]);
  expect(pr.errors).toEqual([]);
}

beforeAll(async () => {
  if (!browserNeeds.available) return;
  const build = Bun.spawnSync([process.execPath, "scripts/build-client.ts"], { cwd: `${import.meta.dir}/..`, stdout: "pipe", stderr: "pipe" });
  if (build.exitCode !== 0) throw new Error(`client build failed:\n${build.stderr.toString()}`);
  pki = makePki();
  echo = echoServer();
  tlsEcho = tlsEchoServer(pki.certPem, pki.keyPem);
  rogueTls = tlsEchoServer(pki.rogueCertPem, pki.rogueKeyPem);
  udpA = await udpEchoServer("A:");
  udpB = await udpEchoServer("B:");
  srv = await createServer({ hostname: "127.0.0.1", port: 0, noPolicy: true, extraCaPem: [pki.caPem], logger: silentLogger }).listen();
  policySrv = await createServer({ hostname: "127.0.0.1", port: 0, logger: silentLogger }).listen();
  browser = await launchBrowser();
  ({ page, problems } = await openPage(browser, `http://127.0.0.1:${srv.port}/healthz`, [PAGE_HELPERS]));
  await page.exposeFunction("wasmnetDial", dial);
}, 60_000);

afterAll(async () => {
  if (!browserNeeds.available) return;
  await browser?.close();
  await srv?.stop();
  await policySrv?.stop();
  echo?.stop();
  tlsEcho?.stop();
  rogueTls?.stop();
  udpA?.stop();
  udpB?.stop();
});

it("serves the built client at /wasmnet-client.js", async () => {
  const res = await fetch(clientUrl());
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("javascript");
  expect(await res.text()).toContain("WasmnetClient");
});

for (const binary of [false, true]) {
  const framing = binary ? "binary" : "json";
  describe(`browser client, ${framing} framing`, () => {
    it("negotiates version 2 with flow and half_close", async () => {
      const r = await page.evaluate(
        async ({ clientUrl, wsUrl, binary }) => {
          const { WasmnetClient } = await import(clientUrl);
          const c = new WasmnetClient(wsUrl, { binary });
          await c.ready();
          const out = { version: c.version, features: [...c.features], window: c.window };
          c.disconnect();
          return out;
        },
        { clientUrl: clientUrl(), wsUrl: wsUrl(srv), binary },
      );
      expect(r.version).toBe(2);
      expect(r.features.sort()).toEqual(["flow", "half_close"]);
      expect(r.window).toBeGreaterThan(0);
      await expectNoPageProblems();
    });

    it("TCP echo (ids 1, 2; string, Uint8Array and ArrayBuffer data; onData replays early data)", async () => {
      const r = await page.evaluate(
        async ({ clientUrl, wsUrl, binary, port }) => {
          const { WasmnetClient } = await import(clientUrl);
          const c = new WasmnetClient(wsUrl, { binary });
          await c.ready();
          const a = await c.connect("127.0.0.1", port);
          const b = await c.connect("127.0.0.1", port);
          const enc = new TextEncoder();
          c.send(a, "héllo ");
          c.send(a, enc.encode("wasm"));
          c.send(a, enc.encode("net").buffer);
          const want = enc.encode("héllo wasmnet").length;
          // Register onData only after the whole echo has arrived (it waits undelivered in the
          // socket's inbox, a private field of the client): it must be replayed.
          const inboxed = () => ((c as unknown as { sockets: Map<number, { inbox: Uint8Array[] }> }).sockets.get(a)?.inbox ?? []).reduce((n, d) => n + d.length, 0);
          const deadline = Date.now() + 10_000;
          while (inboxed() < want) {
            if (Date.now() > deadline) throw new Error(`the echo did not arrive within 10 s (${inboxed()} of ${want} bytes in the inbox)`);
            await new Promise((r) => setTimeout(r, 5));
          }
          const parts: number[] = [];
          await new Promise<void>((resolve) =>
            c.onData(a, (d: Uint8Array) => {
              parts.push(...d);
              if (parts.length >= want) resolve();
            }),
          );
          const closedA = new Promise<unknown>((resolve) => c.onClose(a, resolve));
          c.close(a);
          await closedA;
          // The other socket still works.
          const got: number[] = [];
          const echoed = new Promise<void>((resolve) =>
            c.onData(b, (d: Uint8Array) => {
              got.push(...d);
              if (got.length >= 3) resolve();
            }),
          );
          c.send(b, "abc");
          await echoed;
          c.disconnect();
          return { a, b, text: new TextDecoder().decode(new Uint8Array(parts)), other: new TextDecoder().decode(new Uint8Array(got)) };
        },
        { clientUrl: clientUrl(), wsUrl: wsUrl(srv), binary, port: echo.port },
      );
      expect(r.a).toBe(1);
      expect(r.b).toBe(2);
      expect(r.text).toBe("héllo wasmnet");
      expect(r.other).toBe("abc");
      await expectNoPageProblems();
    });

    it("TLS echo to localhost with the test CA; an untrusted certificate is ETLS", async () => {
      const r = await page.evaluate(
        async ({ clientUrl, wsUrl, binary, port, roguePort }) => {
          const { WasmnetClient } = await import(clientUrl);
          const c = new WasmnetClient(wsUrl, { binary });
          await c.ready();
          const id = await c.connectTls("localhost", port);
          const parts: number[] = [];
          const done = new Promise<void>((resolve) =>
            c.onData(id, (d: Uint8Array) => {
              parts.push(...d);
              if (parts.length >= 11) resolve();
            }),
          );
          c.send(id, "over TLS ok");
          await done;
          let rogue: unknown = null;
          try {
            await c.connectTls("localhost", roguePort);
          } catch (e) {
            const err = e as { code: string; name: string };
            rogue = { code: err.code, name: err.name };
          }
          c.disconnect();
          return { text: new TextDecoder().decode(new Uint8Array(parts)), rogue };
        },
        { clientUrl: clientUrl(), wsUrl: wsUrl(srv), binary, port: tlsEcho.port, roguePort: rogueTls.port },
      );
      expect(r.text).toBe("over TLS ok");
      expect(r.rogue).toEqual({ code: "ETLS", name: "WasmnetError" });
      await expectNoPageProblems();
    });

    it("UDP echo: send on the connected socket, sendTo another server, onDataFrom reports the sender", async () => {
      const r = await page.evaluate(
        async ({ clientUrl, wsUrl, binary, portA, portB }) => {
          const { WasmnetClient } = await import(clientUrl);
          const c = new WasmnetClient(wsUrl, { binary });
          await c.ready();
          const { id, port } = await c.connectUdp("127.0.0.1", portA);
          const got: { text: string; addr: string; port: number }[] = [];
          const two = new Promise<void>((resolve) =>
            c.onDataFrom(id, (d: Uint8Array, addr: string, p: number) => {
              got.push({ text: new TextDecoder().decode(d), addr, port: p });
              if (got.length === 2) resolve();
            }),
          );
          c.send(id, "ping");
          // The answer from A first, then the datagram to B.
          const deadline = Date.now() + 10_000;
          while (got.length < 1) {
            if (Date.now() > deadline) throw new Error("no answer from A within 10 s");
            await new Promise((r) => setTimeout(r, 5));
          }
          c.sendTo(id, "127.0.0.1", portB, "pong");
          await two;
          c.disconnect();
          return { id, port, got: got.sort((x, y) => x.text.localeCompare(y.text)) };
        },
        { clientUrl: clientUrl(), wsUrl: wsUrl(srv), binary, portA: udpA.port, portB: udpB.port },
      );
      expect(r.port).toBeGreaterThan(0);
      expect(r.got).toEqual([
        { text: "A:ping", addr: "127.0.0.1", port: udpA.port },
        { text: "B:pong", addr: "127.0.0.1", port: udpB.port },
      ]);
      await expectNoPageProblems();
    });

    it('resolve("localhost") answers loopback addresses', async () => {
      const addrs = await page.evaluate(
        async ({ clientUrl, wsUrl, binary }) => {
          const { WasmnetClient } = await import(clientUrl);
          const c = new WasmnetClient(wsUrl, { binary });
          await c.ready();
          const a = await c.resolve("localhost");
          c.disconnect();
          return a;
        },
        { clientUrl: clientUrl(), wsUrl: wsUrl(srv), binary },
      );
      expect(addrs.length).toBeGreaterThan(0);
      expect(addrs.some((a: string) => a === "127.0.0.1" || a === "::1")).toBe(true);
      await expectNoPageProblems();
    });

    it("bind 127.0.0.1:0, accept an inbound connection from the test, echo it", async () => {
      const r = await page.evaluate(
        async ({ clientUrl, wsUrl, binary }) => {
          const { WasmnetClient } = await import(clientUrl);
          const c = new WasmnetClient(wsUrl, { binary });
          await c.ready();
          const { id, port } = await c.bind("127.0.0.1", 0);
          c.listen(id, 16);
          const remotes: string[] = [];
          c.onAccept(id, (conn: number, remote: string) => {
            remotes.push(remote);
            c.onData(conn, (d: Uint8Array) => c.send(conn, d));
          });
          const dialer = (window as unknown as { wasmnetDial(p: number, t: string): Promise<string> }).wasmnetDial;
          const echoed = await dialer(port, "knock knock");
          const closed = new Promise<unknown>((resolve) => c.onClose(id, resolve));
          c.close(id);
          await closed;
          c.disconnect();
          return { port, echoed, remotes };
        },
        { clientUrl: clientUrl(), wsUrl: wsUrl(srv), binary },
      );
      expect(r.port).toBeGreaterThan(0);
      expect(r.echoed).toBe("knock knock");
      expect(r.remotes.length).toBe(1);
      expect(r.remotes[0]).toMatch(/^127\.0\.0\.1:\d+$/);
      await expectNoPageProblems();
    });

    it("a policy refusal rejects with EPOLICY; a refused connection with ECONNREFUSED", async () => {
      const r = await page.evaluate(
        async ({ clientUrl, policyWsUrl, wsUrl, binary, port, closedPort }) => {
          const { WasmnetClient, WasmnetError } = await import(clientUrl);
          const describeErr = (e: unknown) => {
            const err = e as { code: string; name: string; message: string };
            return { code: err.code, name: err.name, isError: e instanceof Error, isWasmnetError: e instanceof WasmnetError, message: err.message };
          };
          const p = new WasmnetClient(policyWsUrl, { binary });
          await p.ready();
          let denied: unknown = "resolved";
          try {
            await p.connect("127.0.0.1", port);
          } catch (e) {
            denied = describeErr(e);
          }
          p.disconnect();
          const c = new WasmnetClient(wsUrl, { binary });
          await c.ready();
          let refused: unknown = "resolved";
          try {
            await c.connect("127.0.0.1", closedPort);
          } catch (e) {
            refused = describeErr(e);
          }
          c.disconnect();
          return { denied, refused };
        },
        { clientUrl: clientUrl(), policyWsUrl: wsUrl(policySrv), wsUrl: wsUrl(srv), binary, port: echo.port, closedPort: freePort() },
      );
      expect(r.denied).toMatchObject({ code: "EPOLICY", name: "WasmnetError", isError: true, isWasmnetError: true });
      expect(r.refused).toMatchObject({ code: "ECONNREFUSED", name: "WasmnetError", isError: true, isWasmnetError: true });
      expect((r.refused as { message: string }).message).toContain("127.0.0.1");
      await expectNoPageProblems();
    });

    it(
      "50 MiB up and 50 MiB down through one socket's streams, intact, WebSocket bufferedAmount bounded by the window",
      async () => {
        const down = testBytes(BIG, 5);
        const downSha = sha256hex(down);
        const upSha = sha256hex(testBytes(BIG, 3));
        const target = duplexServer(down);
        try {
          const upload = target.next().upload;
          const r = await page.evaluate(
            async ({ clientUrl, wsUrl, binary, port, size }) => {
              const w = window as unknown as {
                wasmnetTestBytes(n: number, seed: number): Uint8Array;
                sha256hexOf(parts: Uint8Array[]): Promise<{ bytes: number; sha256: string }>;
              };
              const { WasmnetClient } = await import(clientUrl);
              const c = new WasmnetClient(wsUrl, { binary });
              await c.ready();
              const id = await c.connect("127.0.0.1", port);
              const ws: WebSocket = c.webSocket;
              let maxBuffered = 0;
              let maxQueued = 0;
              const sample = () => {
                maxBuffered = Math.max(maxBuffered, ws.bufferedAmount);
                maxQueued = Math.max(maxQueued, c.bufferedAmount(id));
              };
              const timer = setInterval(sample, 1);
              const { readable, writable } = c.stream(id);
              const reading = (async () => {
                const reader = readable.getReader();
                const parts: Uint8Array[] = [];
                for (;;) {
                  const { value, done } = await reader.read();
                  if (done) break;
                  parts.push(value);
                  sample();
                }
                return w.sha256hexOf(parts);
              })();
              const up = w.wasmnetTestBytes(size, 3);
              const writer = writable.getWriter();
              const step = 256 * 1024;
              for (let o = 0; o < up.length; o += step) {
                await writer.write(up.subarray(o, o + step));
                sample();
              }
              await writer.close();
              const got = await reading;
              clearInterval(timer);
              const out = { got, maxBuffered, maxQueued, window: c.window, version: c.version };
              c.disconnect();
              return out;
            },
            { clientUrl: clientUrl(), wsUrl: wsUrl(srv), binary, port: target.port, size: BIG },
          );
          expect(r.version).toBe(2);
          expect(r.got).toEqual({ bytes: BIG, sha256: downSha });
          expect(await upload).toEqual({ bytes: BIG, sha256: upSha });
          // Never more than the window outstanding: on the wire that is the window plus one
          // message of headroom, grown by base64 in the JSON framing.
          const wire = binary ? 1 : 4 / 3;
          const bound = (r.window + CHUNK) * wire + 4096;
          console.log(`${framing}: max WebSocket bufferedAmount ${r.maxBuffered} (bound ${Math.round(bound)}, window ${r.window}); max client queue ${r.maxQueued}`);
          expect(r.maxBuffered).toBeLessThanOrEqual(bound);
          expect(r.maxBuffered).toBeGreaterThan(0);
          await expectNoPageProblems();
        } finally {
          target.stop();
        }
      },
      180_000,
    );

    it(
      "the server stopped mid-transfer: pending promises reject with ECLOSED, onClose fires, nothing unhandled",
      async () => {
        const flood = floodServer();
        const own = await createServer({ hostname: "127.0.0.1", port: 0, noPolicy: true, logger: silentLogger }).listen();
        const { page: p, problems: pr } = await openPage(browser, `http://127.0.0.1:${srv.port}/healthz`, [PAGE_HELPERS]);
        try {
          await p.evaluate(
            async ({ clientUrl, wsUrl, binary, port }) => {
              const { WasmnetClient } = await import(clientUrl);
              const c = new WasmnetClient(wsUrl, { binary });
              await c.ready();
              const id = await c.connect("127.0.0.1", port);
              const st = {
                received: 0,
                blocked: false,
                sent: 0,
                closeFired: 0,
                closeCode: "" as string,
                sendErr: "" as string,
                readErr: "" as string,
              };
              const second = await c.connect("127.0.0.1", port);
              const { readable } = c.stream(second);
              const reader = readable.getReader();
              const readerDone = (async () => {
                try {
                  for (;;) {
                    const { done } = await reader.read();
                    if (done) return "done";
                  }
                } catch (e) {
                  st.readErr = (e as { code: string }).code;
                  return "error";
                }
              })();
              const closed = new Promise<void>((resolve) =>
                c.onClose(id, (err?: { code: string }) => {
                  st.closeFired++;
                  st.closeCode = err?.code ?? "none";
                  resolve();
                }),
              );
              c.onData(id, (d: Uint8Array) => {
                st.received += d.length;
              });
              const chunk = new Uint8Array(1 << 20);
              const sending = (async () => {
                try {
                  for (let i = 0; i < 512; i++) {
                    const t = setTimeout(() => (st.blocked = true), 500); // stuck: no credit for 500 ms
                    await c.sendAsync(id, chunk);
                    clearTimeout(t);
                    st.sent += chunk.length;
                  }
                  st.sendErr = "never blocked";
                } catch (e) {
                  st.sendErr = (e as { code: string }).code;
                }
              })();
              Object.assign(window, { killState: st, killClient: c, killClosed: closed, killSending: sending, killReader: readerDone });
            },
            { clientUrl: clientUrl(), wsUrl: wsUrl(own), binary, port: flood.port },
          );
          // Wait until data is flowing down and an upload promise is stuck on credit.
          let st: { received: number; blocked: boolean } = { received: 0, blocked: false };
          await waitFor(
            async () => {
              st = await p.evaluate(() => (window as unknown as { killState: { received: number; blocked: boolean } }).killState);
              return st.received > 2 * MiB && st.blocked;
            },
            { what: "data flowing down and an upload stuck on credit", timeoutMs: 30_000, intervalMs: 50, detail: () => st },
          );
          expect(st.received).toBeGreaterThan(2 * MiB);
          expect(st.blocked).toBe(true);

          await own.stop();

          const r = await p.evaluate(async () => {
            const w = window as unknown as {
              killState: Record<string, unknown>;
              killClient: { connect(a: string, p: number): Promise<number>; resolve(n: string): Promise<string[]>; send(id: number, d: string): void };
              killClosed: Promise<void>;
              killSending: Promise<void>;
              killReader: Promise<string>;
            };
            const within = <T>(what: string, pr: Promise<T>) =>
              Promise.race([pr, new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`${what} still pending after 10 s`)), 10_000))]);
            await within("onClose", w.killClosed);
            await within("sendAsync", w.killSending);
            const reader = await within("reader", w.killReader);
            let after = "";
            try {
              await within("connect after close", w.killClient.connect("127.0.0.1", 1));
              after = "resolved";
            } catch (e) {
              after = (e as { code?: string }).code ?? String(e);
            }
            let sendAfter = "";
            try {
              w.killClient.send(1, "x");
              sendAfter = "no throw";
            } catch (e) {
              sendAfter = (e as { code: string }).code;
            }
            await new Promise((r) => setTimeout(r, 200)); // nothing may happen late: let any unhandled rejection surface
            return { ...w.killState, reader, after, sendAfter };
          });
          expect(r).toMatchObject({ closeFired: 1, closeCode: "ECLOSED", sendErr: "ECLOSED", reader: "error", readErr: "ECLOSED", after: "ECLOSED", sendAfter: "ECLOSED" });
          await expectNoPageProblems(p, pr);
        } finally {
          await p.close();
          await own.stop();
          flood.stop();
        }
      },
      90_000,
    );
  });
}

// ---- tokens ----
// A server whose policy has an [auth] table (an HS256 secret written to a temp dir), one that
// refuses every origin but https://app.example, and a page of their own: the failed handshakes
// below make Chromium log network errors to the console, which the shared page must not collect.
describe("browser client with tokens", () => {
  let dir: string;
  let secret: Uint8Array;
  let authSrv: WasmnetServer;
  let originSrv: WasmnetServer;
  let tokenPage: Page;
  let tokenProblems: PageProblems;
  // Chromium's own reports of the refusals this block provokes; anything else is a problem.
  const EXPECTED_CONSOLE = /WebSocket connection to .* failed|Failed to load resource: the server responded with a status of (401|403)/;

  const token = (sub: string, over: Partial<Parameters<typeof createToken>[0]> = {}) => createToken({ secret, sub, ttlSecs: 300, aud: "wasmnet", ...over });

  beforeAll(async () => {
    if (!browserNeeds.available) return;
    dir = mkdtempSync(join(tmpdir(), "wasmnet-browser-auth-"));
    secret = crypto.getRandomValues(new Uint8Array(32));
    writeFileSync(join(dir, "secret.key"), secret);
    const network = '[network]\ndeny = []\nallow = ["*"]\n';
    writeFileSync(
      join(dir, "auth.toml"),
      `${network}[auth]\nrequired = true\naudience = "wasmnet"\nhs256_secret_file = ${JSON.stringify(join(dir, "secret.key"))}\n[profiles.free.limits]\nmax_sessions_per_identity = 5\n`,
    );
    writeFileSync(join(dir, "origin.toml"), `${network}[server]\nallowed_origins = ["https://app.example"]\n`);
    authSrv = await createServer({ hostname: "127.0.0.1", port: 0, policy: join(dir, "auth.toml"), logger: silentLogger }).listen();
    originSrv = await createServer({ hostname: "127.0.0.1", port: 0, policy: join(dir, "origin.toml"), logger: silentLogger }).listen();
    ({ page: tokenPage, problems: tokenProblems } = await openPage(browser, `http://127.0.0.1:${srv.port}/healthz`));
  });

  afterAll(async () => {
    if (!browserNeeds.available) return;
    await tokenPage?.close();
    await authSrv?.stop();
    await originSrv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function expectOnlyRefusalNoise(): Promise<void> {
    expect(await unhandledIn(tokenPage)).toEqual([]);
    expect(tokenProblems.errors.filter((e) => !EXPECTED_CONSOLE.test(e))).toEqual([]);
  }

  it("Chromium accepts the handshake with the token as a subprotocol: wasmnet selected, identity and profile visible, echo and a zero-round-trip open work", async () => {
    const t = await token("alice", { profile: "free" });
    const r = await tokenPage.evaluate(
      async ({ clientUrl, wsUrl, port, token }) => {
        const { WasmnetClient } = await import(clientUrl);
        const c = new WasmnetClient(wsUrl, { token, binary: true });
        await c.ready();
        const echo = async (id: number, text: string) => {
          let got = "";
          await new Promise<void>((resolve) =>
            c.onData(id, (d: Uint8Array) => {
              got += new TextDecoder().decode(d);
              if (got.length >= text.length) resolve();
            }),
          );
          return got;
        };
        const id = await c.connect("127.0.0.1", port);
        const waited = echo(id, "after connected");
        c.send(id, "after connected");
        const fast = c.openAndSend("127.0.0.1", port, "behind the connect");
        const out = {
          protocol: c.webSocket.protocol,
          identity: c.identity,
          profile: c.profile,
          version: c.version,
          waited: await waited,
          fast: await echo(fast, "behind the connect"),
        };
        c.disconnect();
        return out;
      },
      { clientUrl: clientUrl(), wsUrl: wsUrl(authSrv), port: echo.port, token: t },
    );
    expect(r).toEqual({ protocol: "wasmnet", identity: "alice", profile: "free", version: 2, waited: "after connected", fast: "behind the connect" });
    await expectOnlyRefusalNoise();
  });

  it("a refused token: ready() rejects with EAUTH and the server's reason (expired, missing); without fetch it is only ECLOSED", async () => {
    const expired = await token("bob", { ttlSecs: 60, nowSecs: Math.floor(Date.now() / 1000) - 3600 });
    const r = await tokenPage.evaluate(
      async ({ clientUrl, wsUrl, expired }) => {
        const { WasmnetClient } = await import(clientUrl);
        const outcome = async (options: object) => {
          const c = new WasmnetClient(wsUrl, options);
          try {
            await c.ready();
            return "resolved";
          } catch (e) {
            const err = e as { name: string; code: string; status?: number; message: string };
            return { name: err.name, code: err.code, status: err.status ?? null, message: err.message };
          }
        };
        return {
          expired: await outcome({ token: expired }),
          missing: await outcome({}),
          noFetch: await outcome({ token: expired, fetch: null }),
        };
      },
      { clientUrl: clientUrl(), wsUrl: wsUrl(authSrv), expired },
    );
    expect(r.expired).toEqual({ name: "WasmnetError", code: "EAUTH", status: 401, message: "token has expired" });
    expect(r.missing).toEqual({ name: "WasmnetError", code: "EAUTH", status: 401, message: "a token is required" });
    expect(r.noFetch).toMatchObject({ name: "WasmnetError", code: "ECLOSED", status: null });
    await expectOnlyRefusalNoise();
  });

  it("an origin the server does not allow: EREFUSED 403 naming the page's origin (the GET is cross-origin, read through CORS)", async () => {
    const r = await tokenPage.evaluate(
      async ({ clientUrl, wsUrl }) => {
        const { WasmnetClient } = await import(clientUrl);
        const c = new WasmnetClient(wsUrl);
        try {
          await c.ready();
          return "resolved";
        } catch (e) {
          const err = e as { code: string; status?: number; message: string };
          return { code: err.code, status: err.status ?? null, message: err.message };
        }
      },
      { clientUrl: clientUrl(), wsUrl: wsUrl(originSrv) },
    );
    expect(r).toEqual({ code: "EREFUSED", status: 403, message: `origin http://127.0.0.1:${srv.port} is not in allowed_origins` });
    await expectOnlyRefusalNoise();
  });

  it("a page on the server's own origin, with allowed_origins set: the reason is the token's, not a missing Origin", async () => {
    // A same-origin GET carries no Origin header; the client asks with a POST there.
    const port = freePort();
    const file = join(dir, "same-origin.toml");
    writeFileSync(
      file,
      `[network]\ndeny = []\nallow = ["*"]\n[server]\nallowed_origins = ["http://127.0.0.1:${port}"]\n[auth]\nrequired = true\naudience = "wasmnet"\nhs256_secret_file = ${JSON.stringify(join(dir, "secret.key"))}\n`,
    );
    const own = await createServer({ hostname: "127.0.0.1", port, policy: file, logger: silentLogger }).listen();
    const { page: p, problems: pr } = await openPage(browser, `http://127.0.0.1:${port}/healthz`);
    try {
      const good = await token("carol");
      const expired = await token("carol", { ttlSecs: 60, nowSecs: Math.floor(Date.now() / 1000) - 3600 });
      const r = await p.evaluate(
        async ({ clientUrl, wsUrl, good, expired }) => {
          const { WasmnetClient } = await import(clientUrl);
          const ok = new WasmnetClient(wsUrl, { token: good });
          await ok.ready();
          const identity = ok.identity;
          ok.disconnect();
          const bad = new WasmnetClient(wsUrl, { token: expired });
          try {
            await bad.ready();
            return { identity, refused: "resolved" };
          } catch (e) {
            const err = e as { code: string; status?: number; message: string };
            return { identity, refused: { code: err.code, status: err.status ?? null, message: err.message } };
          }
        },
        { clientUrl: `http://127.0.0.1:${port}/wasmnet-client.js`, wsUrl: `ws://127.0.0.1:${port}/`, good, expired },
      );
      expect(r).toEqual({ identity: "carol", refused: { code: "EAUTH", status: 401, message: "token has expired" } });
      expect(await unhandledIn(p)).toEqual([]);
      expect(pr.errors.filter((e) => !EXPECTED_CONSOLE.test(e))).toEqual([]);
    } finally {
      await p.close();
      await own.stop();
    }
  });
});
