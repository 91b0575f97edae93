// Random and half-valid frames thrown at a real server: it must answer or ignore each one,
// never throw, and keep serving this and other sessions. Random addresses must never become
// traffic off this machine, so the policy allows loopback only and the resolver knows no names.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { parsePolicy } from "../src/policy/load.ts";
import { TestClient } from "./helpers/client.ts";
import { startServer } from "./helpers/server.ts";
import { echoServer } from "./helpers/targets.ts";

let srv: Awaited<ReturnType<typeof startServer>>;
const echo = echoServer();
beforeAll(async () => {
  const policy = parsePolicy('[network]\ndeny = ["*"]\nallow = ["127.0.0.1", "::1"]\nbind_ports = "1-65535"\nmax_connections = 0', "fuzz.toml");
  srv = await startServer({ policy, resolver: async () => [] });
});
afterAll(async () => {
  await srv.stop();
  echo.stop();
});

/** Deterministic PRNG so a failure can be replayed. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

test("3,000 random frames: every session stays usable", async () => {
  const rand = rng(20261125);
  const int = (n: number) => Math.floor(rand() * n);
  const c = await TestClient.open(srv.wsUrl, "binary");
  c.keepEvents = false;
  expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
  const ops = ["connect", "connect_tls", "connect_udp", "bind", "listen", "send", "close", "send_to", "resolve", "hello", "shutdown", "x"];
  for (let i = 0; i < 3000; i++) {
    const kind = int(4);
    if (kind === 0) {
      // Raw bytes with a plausible header: a known type byte, a small id, junk after.
      const len = 9 + int(40);
      const b = new Uint8Array(len);
      for (let j = 0; j < len; j++) b[j] = int(256);
      b[0] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x81, 0xff][int(13)]!;
      b.fill(0, 1, 8);
      b[8] = 2 + int(50); // never id 1, which carries the health check below
      c.raw(b);
    } else if (kind === 1) {
      c.raw(new Uint8Array(int(12)).map(() => int(256)));
    } else if (kind === 2) {
      const o: Record<string, unknown> = { op: ops[int(ops.length)], id: [2 + int(50), -1, 0, 1.5, "7", null, 2 ** 60][int(7)] };
      if (rand() < 0.7) o.addr = ["127.0.0.1", "::1", "", "a b", "localhost", 5][int(6)];
      if (rand() < 0.7) o.port = [0, 1, 9, 65535, 65536, "80", -1][int(7)];
      if (rand() < 0.5) o.data = ["", "AAAA", "!!", 5][int(4)];
      if (rand() < 0.3) o.name = ["localhost", "", "x".repeat(300)][int(3)];
      c.raw(JSON.stringify(o));
    } else {
      c.raw(["", "{", "[]", "null", '{"op":', "\u0000", "{}"][int(7)]!);
    }
    if (i % 200 === 0) await Bun.sleep(1); // yield, so the server's answers are read as the storm goes on
  }
  // The session still relays on the stream it opened first.
  c.framing = "binary";
  c.send({ op: "send", id: 1, data: new TextEncoder().encode("after the storm") });
  await c.waitBytes(1, 15);
  expect(new TextDecoder().decode(c.received(1))).toBe("after the storm");
  // A fresh session works too.
  const d = await TestClient.open(srv.wsUrl);
  expect((await d.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
  d.close();
  c.close();
  // Every request was answered with an error or denial where one was due, and counted.
  expect(srv.handler.ctx.metrics.errors.get("EBADREQ")).toBeGreaterThan(500);
}, 60_000);
