// Per-session bandwidth limit (docs/protocol.md#bandwidth) through a real wasmnet server: 8 Mbps is
// 1 000 000 bytes/s with a one-second burst; over it the server slows down and loses nothing.
// Rates are measured after the first second's burst (1 MB) has been spent, from the arrival
// times of the bytes (timestamps taken in the data callbacks, not by polling).
//
// The rate is the feature here, so these tests assert on time. The bounds are generous, because
// a loaded machine delays the moments measured: no faster than 1.3× the limit (an unlimited
// relay runs at 100+ MB/s) and no slower than 0.6× (throttling too hard would be a bug too).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parsePolicy } from "../src/policy/load.ts";
import { TestClient } from "./helpers/client.ts";
import { metricValue } from "./helpers/prometheus.ts";
import { startServer } from "./helpers/server.ts";
import { makePayload, sha256, sourceServer } from "./helpers/targets.ts";
import { waitFor, withTimeout } from "./helpers/wait.ts";

const RATE = 1_000_000; // bytes per second at 8 Mbps
const BURST = RATE;
const MEASURED = 5 * RATE; // ~5 s past the burst
const TOTAL = BURST + MEASURED;
const MIN_RATE = 0.6 * RATE;
const MAX_RATE = 1.3 * RATE;

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
    let tBurst = 0;
    let t1 = 0;
    c.onEvent = (e) => {
      if (e.ev !== "data" || e.id !== 1) return;
      const now = performance.now();
      if (tBurst === 0 && c.receivedBytes(1) >= BURST) tBurst = now;
      if (t1 === 0 && c.receivedBytes(1) >= TOTAL) t1 = now;
    };
    expect((await c.connect(1, "127.0.0.1", source.port)).ev).toBe("connected");
    await waitFor(() => t1 > 0, { what: `the whole ${TOTAL}-byte download`, timeoutMs: 20_000, detail: () => c.receivedBytes(1) });
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
  test("a ~5 s download averages about 1 MB/s (0.6-1.3), nothing lost", async () => {
    const r = await download(limited.wsUrl);
    console.log(`download: ${(r.rate / 1e6).toFixed(3)} MB/s past the burst, ${Math.round(r.ms)} ms in all`);
    expect(r.sha256).toBe(expectedDown);
    expect(r.rate).toBeGreaterThan(MIN_RATE);
    expect(r.rate).toBeLessThan(MAX_RATE);
  }, 30_000);

  test("a ~5 s upload averages about 1 MB/s (0.6-1.3), nothing lost", async () => {
    const sink = timedSink(TOTAL);
    const data = makePayload(TOTAL, 3);
    const c = await TestClient.open(limited.wsUrl, "binary");
    try {
      expect((await c.connect(1, "127.0.0.1", sink.port)).ev).toBe("connected");
      for (let off = 0; off < TOTAL; off += 64 * 1024) c.send({ op: "send", id: 1, data: data.subarray(off, Math.min(TOTAL, off + 64 * 1024)) });
      await withTimeout(sink.done, `the whole ${TOTAL}-byte upload at the target`, 20_000);
      expect(sink.st.bytes).toBe(TOTAL);
      expect(sink.st.sha256).toBe(sha256(data));
      const rate = ((TOTAL - BURST) / (sink.st.tDone - sink.st.tBurst)) * 1000;
      console.log(`upload: ${(rate / 1e6).toFixed(3)} MB/s past the burst`);
      expect(rate).toBeGreaterThan(MIN_RATE);
      expect(rate).toBeLessThan(MAX_RATE);
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
      expect(r.rate).toBeGreaterThan(MIN_RATE);
      expect(r.rate).toBeLessThan(MAX_RATE);
    }
  }, 30_000);

  test("a throttled session does not slow an unthrottled one in the same process", async () => {
    const down = () => limited.handler.ctx.metrics.bytesDown;
    const before = down();
    const slow = download(limited.wsUrl);
    // The limited session is past its burst and being paused (the server's own byte counter).
    await waitFor(() => down() - before >= BURST + RATE / 5, { what: "the limited session past its burst", detail: () => down() - before });
    const fast = await download(unlimited.wsUrl);
    console.log(`unlimited session alongside: ${(TOTAL / fast.ms / 1e3).toFixed(1)} MB/s`);
    expect(fast.sha256).toBe(expectedDown);
    // 6 MB at the 1 MB/s limit would take over 5 s; unthrottled it takes a fraction of a
    // second, and 4 s leaves room for a loaded machine.
    expect(fast.ms).toBeLessThan(4000);
    const s = await slow;
    expect(s.sha256).toBe(expectedDown);
    expect(s.rate).toBeLessThan(MAX_RATE);
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
      const before = limited.handler.ctx.metrics.udpDroppedTotal;
      // 60 × 50 000 = 3 MB over ~0.6 s: the burst (1 MB) and ~0.6 s of refill pass, the rest
      // is dropped. Paced, so the target's kernel buffer never overflows on its own.
      const n = 60;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        c.send({ op: "send", id: 1, data: new Uint8Array(50_000) });
        await Bun.sleep(10); // the pace (see above)
      }
      const sendMs = performance.now() - t0;
      const dropped = () => limited.handler.ctx.metrics.udpDroppedTotal - before;
      await waitFor(() => received + dropped() >= n, { what: `all ${n} datagrams delivered or dropped`, detail: () => ({ received, dropped: dropped() }) });
      // What the bucket can have let through in the time the sends took (~0.6 s unloaded; a
      // loaded machine stretches the pace, and the bound follows), plus 10 datagrams of slack.
      const maxDelivered = Math.ceil((BURST + (RATE * sendMs) / 1000) / 50_000) + 10;
      console.log(`udp: ${received} delivered, ${dropped()} dropped (at most ${maxDelivered} could pass)`);
      expect(received).toBeGreaterThanOrEqual(20); // the burst went through
      expect(received).toBeLessThanOrEqual(maxDelivered);
      expect(dropped()).toBeGreaterThanOrEqual(n - maxDelivered);
      expect(received + dropped()).toBe(n);
      expect(await metricValue(limited.url, "wasmnet_udp_dropped_total", { reason: "bandwidth" })).toBeGreaterThanOrEqual(dropped());
      expect(c.events.filter((e) => e.ev === "error")).toEqual([]); // dropped, never an error
    } finally {
      c.close();
      target.close();
    }
  }, 15_000);
});
