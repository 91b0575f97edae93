// UDP over the bandwidth limit (docs/protocol.md#bandwidth): a datagram the session's budget
// cannot pay in full is dropped without spending it, so a source sending faster than the limit
// still gets the limit — not a collapse to almost nothing because partial payments drained the
// bucket. Real UDP source on 127.0.0.1, a real server, the limit measured on what the client got.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parsePolicy } from "../src/policy/load.ts";
import { TestClient } from "./helpers/client.ts";
import { startServer } from "./helpers/server.ts";
import { udpFloodSource } from "./helpers/targets.ts";

const MBPS = 2; // 250,000 bytes/s: small enough to offer 5× without loading the machine
const RATE = MBPS * 125_000;
const DATAGRAM = 1400;
/** The bucket starts full (one second of burst): measure after it, over a steady window. */
const SKIP_MS = 1500;
const WINDOW_MS = 3000;

type Srv = Awaited<ReturnType<typeof startServer>>;
let srv: Srv;

beforeAll(async () => {
  srv = await startServer({ policy: parsePolicy(`[network]\ndeny = []\nallow = ["*"]\nmax_bandwidth_mbps = ${MBPS}\n`, "udp-fair.toml") });
});
afterAll(() => srv.stop());

async function measure(factor: number, bursty: boolean): Promise<{ rate: number; offered: number }> {
  // Evenly paced (every 10 ms its share), or in bursts (every 250 ms a quarter second's worth at once).
  const src = await udpFloodSource({ datagram: DATAGRAM, bytesPerSec: factor * RATE, ms: SKIP_MS + WINDOW_MS + 500, burstMs: bursty ? 250 : undefined, fill: 7 });
  const c = await TestClient.open(srv.wsUrl);
  c.keepEvents = false;
  let t0 = 0;
  let inWindow = 0;
  let bound!: () => void;
  const udpBound = new Promise<void>((r) => (bound = r));
  c.onEvent = (e) => {
    if (e.ev === "udp_bound") return bound();
    if (e.ev !== "data_from") return;
    const t = performance.now() - t0;
    if (t >= SKIP_MS && t < SKIP_MS + WINDOW_MS) inWindow += e.data.length;
  };
  c.send({ op: "connect_udp", id: 1, addr: "127.0.0.1", port: src.port });
  await udpBound;
  t0 = performance.now();
  c.send({ op: "send", id: 1, data: new Uint8Array([1]) }); // the source hears the relay and starts
  await Bun.sleep(SKIP_MS + WINDOW_MS + 100); // the measurement is a fixed window of time
  c.close();
  src.stop();
  return { rate: (inWindow * 1000) / WINDOW_MS, offered: factor * RATE };
}

describe("UDP over the bandwidth limit gets the limit, not a collapse", () => {
  for (const bursty of [false, true])
    for (const factor of [1, 2, 5])
      test(`${factor}× the limit, ${bursty ? "in bursts" : "evenly paced"}: 90-110 % of the limit delivered`, async () => {
        const { rate } = await measure(factor, bursty);
        console.log(`udp ${factor}× the limit, ${bursty ? "bursts" : "paced"}: ${(rate / RATE).toFixed(3)} of the limit delivered`);
        // 1× offers exactly the limit: all of it is delivered. Above it, the limit.
        expect(rate / RATE).toBeGreaterThan(0.9);
        expect(rate / RATE).toBeLessThan(1.1);
      }, 20_000);
});
