// Per-session bandwidth limit (docs/protocol.md#bandwidth) through a real wasmnet server: 8 Mbps is
// 1 000 000 bytes/s with a one-second burst; over it the server slows down and loses nothing.
// Rates are measured after the first second's burst (1 MB) has been spent.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parsePolicy } from "../src/policy/load.ts";
import { TestClient } from "./helpers/client.ts";
import { startServer } from "./helpers/server.ts";
import { makePayload, sha256, sourceServer } from "./helpers/targets.ts";

const RATE = 1_000_000; // bytes per second at 8 Mbps
const BURST = RATE;
const MEASURED = 5 * RATE; // ~5 s past the burst
const TOTAL = BURST + MEASURED;

let limited: Awaited<ReturnType<typeof startServer>>;
let unlimited: Awaited<ReturnType<typeof startServer>>;
const source = sourceServer(TOTAL);
const expectedDown = (() => {
  const out = new Uint8Array(TOTAL);
  for (let off = 0; off < TOTAL; off += source.pattern.length) out.set(source.pattern.subarray(0, Math.min(source.pattern.length, TOTAL - off)), off);
  return sha256(out);
})();

/** A TCP sink that hashes what it gets and notes when the burst was passed and when it ended. */
function timedSink(total: number) {
  const hasher = new Bun.CryptoHasher("sha256");
  const st = { bytes: 0, tBurst: 0, tDone: 0, sha256: "" };
  const done = Promise.withResolvers<void>();
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(_s, d) {
        hasher.update(d);
        st.bytes += d.length;
        if (st.tBurst === 0 && st.bytes >= BURST) st.tBurst = performance.now();
        if (st.bytes >= total && st.tDone === 0) {
          st.tDone = performance.now();
          st.sha256 = hasher.digest("hex");
          done.resolve();
        }
      },
      error() {},
    },
  });
  return { port: listener.port, st, done: done.promise, stop: () => listener.stop(true) };
}

/** Download `TOTAL` bytes on a fresh session; bytes/s past the burst, and the content hash. */
async function download(url: string): Promise<{ rate: number; sha256: string; ms: number }> {
  const c = await TestClient.open(url, "binary");
  try {
    const t0 = performance.now();
    expect((await c.connect(1, "127.0.0.1", source.port)).ev).toBe("connected");
    let tBurst = 0;
    while (c.receivedBytes(1) < TOTAL) {
      if (tBurst === 0 && c.receivedBytes(1) >= BURST) tBurst = performance.now();
      if (performance.now() - t0 > 20_000) throw new Error(`download stalled at ${c.receivedBytes(1)} bytes`);
      await Bun.sleep(2);
    }
    const t1 = performance.now();
    if (tBurst === 0) tBurst = t1;
    const past = TOTAL - BURST;
    return { rate: (past / (t1 - tBurst)) * 1000, sha256: sha256(c.received(1)), ms: t1 - t0 };
  } finally {
    c.close();
  }
}

beforeAll(async () => {
  const policy = parsePolicy(`[network]\ndeny = []\nallow = ["*"]\nmax_bandwidth_mbps = 8\n`, "bandwidth.test.toml");
  limited = await startServer({ policy });
  unlimited = await startServer({ noPolicy: true });
});
afterAll(async () => {
  await limited.stop();
  await unlimited.stop();
  source.stop();
});

describe("bandwidth limit (8 Mbps)", () => {
  test("a ~5 s download averages 0.8-1.2 MB/s, nothing lost", async () => {
    const r = await download(limited.wsUrl);
    console.log(`download: ${(r.rate / 1e6).toFixed(3)} MB/s past the burst, ${Math.round(r.ms)} ms in all`);
    expect(r.sha256).toBe(expectedDown);
    expect(r.rate).toBeGreaterThan(0.8 * RATE);
    expect(r.rate).toBeLessThan(1.2 * RATE);
  }, 30_000);

  test("a ~5 s upload averages 0.8-1.2 MB/s, nothing lost", async () => {
    const sink = timedSink(TOTAL);
    const data = makePayload(TOTAL, 3);
    const c = await TestClient.open(limited.wsUrl, "binary");
    try {
      expect((await c.connect(1, "127.0.0.1", sink.port)).ev).toBe("connected");
      for (let off = 0; off < TOTAL; off += 64 * 1024) c.send({ op: "send", id: 1, data: data.subarray(off, Math.min(TOTAL, off + 64 * 1024)) });
      await Promise.race([sink.done, Bun.sleep(20_000)]);
      expect(sink.st.bytes).toBe(TOTAL);
      expect(sink.st.sha256).toBe(sha256(data));
      const rate = ((TOTAL - BURST) / (sink.st.tDone - sink.st.tBurst)) * 1000;
      console.log(`upload: ${(rate / 1e6).toFixed(3)} MB/s past the burst`);
      expect(rate).toBeGreaterThan(0.8 * RATE);
      expect(rate).toBeLessThan(1.2 * RATE);
      expect(c.events.filter((e) => e.ev === "error")).toEqual([]);
    } finally {
      c.close();
      sink.stop();
    }
  }, 30_000);

  test("the limit is per session: two sessions at once each get the full rate", async () => {
    const [a, b] = await Promise.all([download(limited.wsUrl), download(limited.wsUrl)]);
    console.log(`two sessions: ${(a.rate / 1e6).toFixed(3)} and ${(b.rate / 1e6).toFixed(3)} MB/s`);
    for (const r of [a, b]) {
      expect(r.sha256).toBe(expectedDown);
      expect(r.rate).toBeGreaterThan(0.8 * RATE);
      expect(r.rate).toBeLessThan(1.2 * RATE);
    }
  }, 30_000);

  test("a throttled session does not slow an unthrottled one in the same process", async () => {
    const slow = download(limited.wsUrl);
    await Bun.sleep(1500); // the limited session is now past its burst and being paused
    const fast = await download(unlimited.wsUrl);
    console.log(`unlimited session alongside: ${(TOTAL / fast.ms / 1e3).toFixed(1)} MB/s`);
    expect(fast.sha256).toBe(expectedDown);
    expect(fast.ms).toBeLessThan(2000); // 6 MB: at 1 MB/s it would take over 5 s
    const s = await slow;
    expect(s.sha256).toBe(expectedDown);
    expect(s.rate).toBeLessThan(1.2 * RATE);
  }, 30_000);

  test("UDP datagrams over the limit are dropped and counted in /metrics", async () => {
    let received = 0;
    const target = await Bun.udpSocket({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data() {
          received++;
        },
      },
    });
    const c = await TestClient.open(limited.wsUrl, "binary");
    try {
      c.send({ op: "connect_udp", id: 1, addr: "127.0.0.1", port: target.port });
      expect((await c.next(1)).ev).toBe("udp_bound");
      const before = limited.handler.ctx.metrics.udpDropped;
      // 60 × 50 000 = 3 MB over ~0.6 s: the burst (1 MB) and ~0.6 s of refill pass, the rest
      // is dropped. Paced, so the target's kernel buffer never overflows on its own.
      const n = 60;
      for (let i = 0; i < n; i++) {
        c.send({ op: "send", id: 1, data: new Uint8Array(50_000) });
        await Bun.sleep(10);
      }
      for (let i = 0; i < 200 && received + limited.handler.ctx.metrics.udpDropped - before < n; i++) await Bun.sleep(10);
      const dropped = limited.handler.ctx.metrics.udpDropped - before;
      console.log(`udp: ${received} delivered, ${dropped} dropped`);
      expect(received).toBeGreaterThanOrEqual(20); // the burst went through
      expect(received).toBeLessThanOrEqual(45);
      expect(dropped).toBeGreaterThanOrEqual(15);
      expect(received + dropped).toBe(n);
      const text = await (await fetch(new URL("/metrics", limited.url))).text();
      const line = text.split("\n").find((l) => l.startsWith("wasmnet_udp_dropped_total "));
      expect(Number(line?.split(" ")[1])).toBeGreaterThanOrEqual(dropped);
      expect(c.events.filter((e) => e.ev === "error")).toEqual([]); // dropped, never an error
    } finally {
      c.close();
      target.close();
    }
  }, 15_000);
});
