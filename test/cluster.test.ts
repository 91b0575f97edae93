// Cluster-wide limits: two wasmnet processes (two ports) sharing a real Redis, as two instances
// behind a load balancer would. Per-identity caps hold across both; a killed instance's share
// frees itself within lease_secs; Redis going away degrades as configured ("local" keeps
// serving, "deny" refuses with 503), never hangs; Redis coming back restores the cluster limits.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createToken } from "../src/auth/issue.ts";
import { TestClient } from "./helpers/client.ts";
import { needing } from "./helpers/components.ts";
import { dialAccepted, refused } from "./helpers/dial.ts";
import { startRedis, type RedisProcess } from "./helpers/redis-server.ts";
import { spawnServer, type Child } from "./helpers/spawn.ts";
import { echoServer } from "./helpers/targets.ts";
import { waitFor } from "./helpers/wait.ts";

const redisTests = needing("redis-server");
const LEASE_SECS = 2;
const secret = new TextEncoder().encode("cluster-test-hs256-secret-0123456789abcdef");
const dir = mkdtempSync(join(tmpdir(), "wasmnet-cluster-"));
writeFileSync(join(dir, "secret.key"), secret);

function policy(redisUrl: string, onRedisError: "local" | "deny"): string {
  const file = join(dir, `policy-${onRedisError}.toml`);
  writeFileSync(
    file,
    `[network]
deny = []
allow = ["*"]
[limits]
max_sessions_per_identity = 2
max_connections_per_identity = 2
[auth]
audience = "wasmnet"
hs256_secret_file = "secret.key"
[cluster]
redis = "${redisUrl}"
lease_secs = ${LEASE_SECS}
on_redis_error = "${onRedisError}"
`,
  );
  return file;
}

const token = (sub: string) => createToken({ secret, sub, aud: "wasmnet", ttlSecs: 600 });

/**
 * Whether a session would be admitted, without keeping one: a plain GET runs every admission
 * check (the session limits included, their unit given straight back) and answers 426 where an
 * upgrade would have been let in.
 */
async function upgradeStatus(child: Child, t: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`${child.url}/?token=${t}`, { signal: AbortSignal.timeout(5000) });
  const body = (await r.text()).trim();
  return { status: r.status === 426 ? 101 : r.status, body };
}

async function metric(child: Child, series: string): Promise<number> {
  const text = await (await fetch(`${child.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

let redis: RedisProcess;
let a: Child;
let b: Child;
const echo = echoServer();
const open: TestClient[] = [];
const session = async (child: Child, t: string) => {
  const c = await TestClient.open(`${child.wsUrl}?token=${t}`);
  open.push(c);
  return c;
};

beforeAll(async () => {
  if (!redisTests.available) return;
  redis = await startRedis();
  const file = policy(redis.url, "local");
  [a, b] = await Promise.all([spawnServer(["--policy", file]), spawnServer(["--policy", file])]);
});
afterAll(async () => {
  for (const c of open) c.close();
  await Promise.all([a?.stop("SIGKILL"), b?.stop("SIGKILL")]);
  await redis?.kill();
  echo.stop();
});

describe("two instances sharing Redis", () => {
  redisTests.test("max_sessions_per_identity = 2 holds across both: the third session is refused on either", async () => {
    const t = await token("alice");
    await session(a, t);
    await session(b, t);
    expect(await upgradeStatus(a, t)).toEqual({ status: 429, body: "max_sessions_per_identity (2) reached for alice" });
    expect(await upgradeStatus(b, t)).toEqual({ status: 429, body: "max_sessions_per_identity (2) reached for alice" });
    expect((await upgradeStatus(a, await token("someone-else"))).status).toBe(101);
  });

  redisTests.test("max_connections_per_identity = 2 holds across both: the third connect is ELIMIT", async () => {
    const t = await token("bob");
    const s1 = await session(a, t);
    const s2 = await session(b, t);
    expect((await s1.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    expect((await s2.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    expect(await s1.connect(2, "127.0.0.1", echo.port)).toMatchObject({ ev: "error", code: "ELIMIT" });
    expect(await s2.connect(2, "127.0.0.1", echo.port)).toMatchObject({ ev: "error", code: "ELIMIT" });
    s1.send({ op: "close", id: 1 });
    await waitFor(async () => (await s2.connect(3, "127.0.0.1", echo.port)).ev === "connected", "a unit back on the other instance once one stream closes");
  });

  redisTests.test("accepted inbound connections take a unit too: over the cap they are reset unannounced; admitted ones keep the bytes sent while Redis answered", async () => {
    const t = await token("erin");
    const s1 = await session(a, t);
    const s2 = await session(b, t);
    s1.send({ op: "bind", id: 1, addr: "127.0.0.1", port: 0 });
    const l = await s1.next(1);
    expect(l.ev).toBe("listening");
    const port = (l as { port: number }).port;
    expect((await s2.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    expect(await refused(port)).toBe(true);
    expect(s1.events.filter((e) => e.ev === "accepted")).toEqual([]);
    s2.send({ op: "close", id: 1 });
    expect((await s2.next(1)).ev).toBe("closed");
    const { peer } = await dialAccepted(s1, 1, port, "early bytes");
    expect(await s2.connect(2, "127.0.0.1", echo.port)).toMatchObject({ ev: "error", code: "ELIMIT" });
    peer.socket.end();
  });

  redisTests.test(`kill -9 of an instance holding leases: the other accepts again within lease_secs (${LEASE_SECS} s) + 2 s`, async () => {
    const t = await token("carol");
    const victim = await spawnServer(["--policy", policy(redis.url, "local")]);
    await session(victim, t);
    await session(victim, t);
    expect(await upgradeStatus(b, t)).toEqual({ status: 429, body: "max_sessions_per_identity (2) reached for carol" });
    const t0 = performance.now();
    victim.proc.kill("SIGKILL");
    await victim.proc.exited;
    // Polled every 50 ms: faster would run into the per-address limit on admission checks (5 a second past a burst of 20).
    await waitFor(async () => (await upgradeStatus(b, t)).status === 101, { what: "the dead instance's leases to expire", timeoutMs: (LEASE_SECS + 2) * 1000, intervalMs: 50 });
    console.log(`leases of a killed instance freed after ${((performance.now() - t0) / 1000).toFixed(2)} s (lease_secs ${LEASE_SECS})`);
  }, 30_000);

  redisTests.test("Redis down: 'local' keeps serving with its own counts, 'deny' refuses with 503; neither hangs; Redis back restores the cluster limits", async () => {
    const denying = await spawnServer(["--policy", policy(redis.url, "deny")]);
    const t = await token("dave");
    const port = redis.port;
    await redis.kill();
    // local: a session still opens, answered quickly (the Redis call has a deadline).
    const t0 = performance.now();
    expect((await upgradeStatus(a, t)).status).toBe(101);
    expect(performance.now() - t0).toBeLessThan(5000);
    // local limits still hold in this process: two sessions, then 429.
    await session(a, t);
    await session(a, t);
    expect(await upgradeStatus(a, t)).toEqual({ status: 429, body: "max_sessions_per_identity (2) reached for dave" });
    // deny: refused with a clear status.
    const refused = await upgradeStatus(denying, await token("erin"));
    expect(refused).toEqual({ status: 503, body: "cluster limits are unavailable (Redis does not answer); try again later" });
    await waitFor(async () => (await metric(a, "wasmnet_redis_up")) === 0, "wasmnet_redis_up to say 0");
    expect(await metric(a, "wasmnet_redis_fallbacks_total")).toBeGreaterThan(0);
    // Redis comes back on the same address: cluster limits hold again without a restart.
    redis = await startRedis(port);
    await waitFor(async () => (await metric(a, "wasmnet_redis_up")) === 1 && (await metric(b, "wasmnet_redis_up")) === 1, { what: "both instances to see Redis again", timeoutMs: 10_000 });
    const f = await token("frank");
    await session(a, f);
    await session(b, f);
    expect(await upgradeStatus(a, f)).toEqual({ status: 429, body: "max_sessions_per_identity (2) reached for frank" });
    expect(await upgradeStatus(denying, f)).toEqual({ status: 429, body: "max_sessions_per_identity (2) reached for frank" }); // the deny instance counts in Redis again too
    await denying.stop("SIGKILL");
  }, 40_000);
});
