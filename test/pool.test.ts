// Connection pooling (README.md#connection-pooling) through a real wasmnet server, real WebSockets and real targets.
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { unrestrictedPolicy } from "../src/policy/load.ts";
import { TestClient } from "./helpers/client.ts";
import { startServer } from "./helpers/server.ts";
import { waitFor } from "./helpers/wait.ts";

type Srv = Awaited<ReturnType<typeof startServer>>;

/**
 * Numbers each accepted connection (1, 2, …) and answers any data with "<serial>:<data>", so a
 * test can tell which connection a stream got. Optional: a banner on accept, closing sockets
 * that receive nothing within idleCloseMs.
 */
function serialServer(opts: { banner?: string; idleCloseMs?: number } = {}) {
  type St = { serial: number; timer?: ReturnType<typeof setTimeout>; got: number };
  const t = { port: 0, accepted: 0, closed: 0, open: new Set<Socket<St>>(), usedBy: new Map<number, string[]>(), stop: () => {} };
  const listener = Bun.listen<St>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { serial: ++t.accepted, got: 0 };
        t.open.add(s);
        if (opts.banner) s.write(opts.banner);
        if (opts.idleCloseMs) s.data.timer = setTimeout(() => s.end(), opts.idleCloseMs);
      },
      data(s, d) {
        clearTimeout(s.data.timer);
        const text = d.toString();
        const list = t.usedBy.get(s.data.serial) ?? [];
        list.push(text);
        t.usedBy.set(s.data.serial, list);
        s.write(`${s.data.serial}:${text}`);
      },
      close(s) {
        clearTimeout(s.data?.timer);
        t.open.delete(s);
        t.closed++;
      },
      error() {},
    },
  });
  t.port = listener.port;
  t.stop = () => listener.stop(true);
  return t;
}

/** Send `text` on id and return the serial of the target connection that answered. */
async function ask(c: TestClient, id: number, text: string): Promise<number> {
  c.clearReceived(id);
  c.send({ op: "send", id, data: new TextEncoder().encode(text) });
  const want = text.length + 2;
  await c.waitBytes(id, want, 5000);
  const reply = new TextDecoder().decode(c.received(id));
  const m = /^(\d+):/.exec(reply);
  if (!m) throw new Error(`unexpected reply ${JSON.stringify(reply)}`);
  return Number(m[1]);
}

let cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

async function setup(opts: { idleSecs?: number; perKey?: number; banner?: string; idleCloseMs?: number } = {}) {
  const target = serialServer(opts);
  const srv: Srv = await startServer({ noPolicy: true, poolIdleSecs: opts.idleSecs ?? 30, poolPerKey: opts.perKey ?? 4 });
  cleanup.push(() => target.stop(), () => srv.stop());
  const pool = srv.handler.ctx.pool!;
  expect(pool).not.toBeNull();
  return { target, srv, pool };
}

describe("pool", () => {
  test("pooling is off by default", async () => {
    const srv = await startServer({ noPolicy: true });
    cleanup.push(() => srv.stop());
    expect(srv.handler.ctx.pool).toBeNull();
  });

  test("a second connect to the same destination is served from the pool", async () => {
    const { target, pool, srv } = await setup();
    const c = await TestClient.open(srv.wsUrl);
    cleanup.push(() => c.close());
    expect(await c.connect(1, "127.0.0.1", target.port)).toEqual({ ev: "connected", id: 1 });
    expect(pool.misses).toBe(1);
    // The miss asked for a spare: the target accepts one connection ahead of use.
    await waitFor(() => pool.size("127.0.0.1", target.port) === 1, "a ready connection");
    expect(target.accepted).toBe(2);
    const first = await ask(c, 1, "a");

    expect(await c.connect(2, "127.0.0.1", target.port)).toEqual({ ev: "connected", id: 2 });
    expect(pool.hits).toBe(1);
    expect(pool.misses).toBe(1);
    const second = await ask(c, 2, "b");
    expect(second).not.toBe(first);
    // The hit was the connection accepted before the second connect, and it is replaced.
    expect(second).toBeLessThanOrEqual(2);
    await waitFor(() => pool.size("127.0.0.1", target.port) === 1, "a replacement");
    expect(target.accepted).toBe(3);

    // Both streams work independently and the /metrics text shows the pool.
    expect(await ask(c, 1, "again")).toBe(first);
    const text = await (await fetch(new URL("/metrics", srv.url))).text();
    expect(text).toContain('wasmnet_pool_total{result="hit"} 1');
    expect(text).toContain('wasmnet_pool_total{result="miss"} 1');
  });

  test("a connection used by one session is never given to another", async () => {
    const { target, pool, srv } = await setup({ perKey: 2 });
    const seen = new Set<number>();
    const clients: TestClient[] = [];
    for (let i = 0; i < 6; i++) {
      const c = await TestClient.open(srv.wsUrl);
      clients.push(c);
      cleanup.push(() => c.close());
      expect((await c.connect(5, "127.0.0.1", target.port)).ev).toBe("connected");
      const serial = await ask(c, 5, `session${i}`);
      expect(seen.has(serial)).toBe(false);
      seen.add(serial);
      // Every other session closes its stream before the next one connects: a closed (used)
      // connection must not come back either.
      if (i % 2 === 0) {
        c.send({ op: "close", id: 5 });
        await c.next(5);
      }
      await waitFor(() => pool.size("127.0.0.1", target.port) >= 1, "a spare");
    }
    expect(pool.hits).toBe(5);
    // Each target connection carried the bytes of exactly one session.
    for (const [, texts] of target.usedBy) expect(new Set(texts.map((t) => t.replace(/\d+$/, ""))).size).toBe(1);
    for (const [, texts] of target.usedBy) expect(texts.length).toBe(1);
    expect(target.usedBy.size).toBe(6);
  });

  test("dead pooled connections are discarded: the next connect is a miss and works", async () => {
    // The target hangs up on connections that stay silent for 150 ms (like many servers do).
    const { target, pool, srv } = await setup({ idleCloseMs: 150 });
    const c = await TestClient.open(srv.wsUrl);
    cleanup.push(() => c.close());
    c.send({ op: "connect", id: 1, addr: "127.0.0.1", port: target.port });
    c.send({ op: "send", id: 1, data: new TextEncoder().encode("x") });
    expect((await c.next(1)).ev).toBe("connected");
    await waitFor(() => target.accepted === 2, "the spare");
    await waitFor(() => target.closed === 1, "the target to hang up on the spare");
    await waitFor(() => pool.size() === 0, "the dead entry to be dropped");

    c.send({ op: "connect", id: 2, addr: "127.0.0.1", port: target.port });
    c.send({ op: "send", id: 2, data: new TextEncoder().encode("y") });
    expect((await c.next(2)).ev).toBe("connected");
    await c.waitBytes(2, 3);
    // A fresh connection (serial 3 or 4: this miss asks for a new spare at the same time).
    expect(["3:y", "4:y"]).toContain(new TextDecoder().decode(c.received(2)));
    expect(pool.hits).toBe(0);
    expect(pool.misses).toBe(2);
  });

  test("idle entries expire after idle_secs", async () => {
    const { target, pool, srv } = await setup({ idleSecs: 1 });
    const c = await TestClient.open(srv.wsUrl);
    cleanup.push(() => c.close());
    expect((await c.connect(1, "127.0.0.1", target.port)).ev).toBe("connected");
    await waitFor(() => pool.size() === 1, "the spare");
    const readyAt = performance.now();
    await waitFor(() => target.closed === 1, "the spare to expire");
    const after = performance.now() - readyAt;
    // The idle timeout is the feature: never early; the upper bound is generous for a loaded machine.
    expect(after).toBeGreaterThan(800);
    expect(after).toBeLessThan(5000);
    expect(pool.size()).toBe(0);
    expect(target.open.size).toBe(1); // the stream in use is untouched
    expect((await c.connect(2, "127.0.0.1", target.port)).ev).toBe("connected");
    expect(pool.misses).toBe(2);
    expect(pool.hits).toBe(0);
  });

  test("a banner sent before hand-over is delivered first, exactly once", async () => {
    const { target, pool, srv } = await setup({ banner: "220 hello\r\n" });
    const c = await TestClient.open(srv.wsUrl);
    cleanup.push(() => c.close());
    expect((await c.connect(1, "127.0.0.1", target.port)).ev).toBe("connected");
    await c.waitBytes(1, 11);
    expect(new TextDecoder().decode(c.received(1))).toBe("220 hello\r\n");
    const first = await ask(c, 1, "x");
    await waitFor(() => pool.size() === 1, "the spare");
    // The spare's banner has arrived and waits in the pool (its idle entries' early bytes).
    const idle = () => [...(pool["idle"] as Map<string, { earlyBytes: number }[]>).values()].flat();
    await waitFor(() => idle().some((e) => e.earlyBytes === 11), "the spare's banner in the pool");
    expect((await c.connect(2, "127.0.0.1", target.port)).ev).toBe("connected");
    expect(pool.hits).toBe(1);
    await c.waitBytes(2, 11);
    expect(new TextDecoder().decode(c.received(2))).toBe("220 hello\r\n");
    const second = await ask(c, 2, "EHLO");
    expect(second).not.toBe(first);
    expect(second).toBeLessThanOrEqual(2);
  });

  test("a target FIN on a pooled stream is `closed` for a version-1 client", async () => {
    const { target, srv, pool } = await setup();
    const c = await TestClient.open(srv.wsUrl);
    cleanup.push(() => c.close());
    expect((await c.connect(1, "127.0.0.1", target.port)).ev).toBe("connected");
    await waitFor(() => pool.size() === 1, "the spare");
    expect((await c.connect(2, "127.0.0.1", target.port)).ev).toBe("connected");
    expect(pool.hits).toBe(1);
    const serial = await ask(c, 2, "hi");
    for (const s of target.open) if (s.data.serial === serial) s.end();
    expect(await c.next(2)).toEqual({ ev: "closed", id: 2 });
  });

  test("[pool] warm targets are resolved, policy-checked and connected at start", async () => {
    const target = serialServer();
    const policy = unrestrictedPolicy();
    policy.rules = { deny: [], allow: policy.rules.allow };
    policy.pool = { idleSecs: 30, perKey: 2, warm: [`warm.test:${target.port}`] };
    const srv = await startServer({ policy, resolver: async (n) => (n === "warm.test" ? ["127.0.0.1"] : []) });
    cleanup.push(() => target.stop(), () => srv.stop());
    const pool = srv.handler.ctx.pool!;
    await pool.warmed;
    expect(pool.size("127.0.0.1", target.port)).toBe(2);
    expect(target.accepted).toBe(2);
    const c = await TestClient.open(srv.wsUrl);
    cleanup.push(() => c.close());
    expect((await c.connect(1, "warm.test", target.port)).ev).toBe("connected");
    expect(srv.handler.ctx.pool!.hits).toBe(1);
    expect(await ask(c, 1, "w")).toBeLessThanOrEqual(2);
  });

  test("TLS connects never use the pool", async () => {
    const { target, pool, srv } = await setup();
    const c = await TestClient.open(srv.wsUrl);
    cleanup.push(() => c.close());
    // Not a TLS server: the handshake fails, and the pool was never asked.
    const ev = await c.connect(1, "127.0.0.1", target.port, "connect_tls");
    expect(ev.ev).toBe("error");
    expect(pool.hits + pool.misses).toBe(0);
  });
});
