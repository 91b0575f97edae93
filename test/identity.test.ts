// Identities end to end: signed tokens on a real server, profiles and the token's allow list,
// per-identity limits across sessions (sessions, connections, shared bandwidth, daily bytes),
// live reload while streams are open, and no token text in any log line.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createToken } from "../src/auth/issue.ts";
import { createLogger } from "../src/log.ts";
import { TestClient } from "./helpers/client.ts";
import { dialAccepted, refused } from "./helpers/dial.ts";
import { startServer } from "./helpers/server.ts";
import { echoServer, sourceServer } from "./helpers/targets.ts";
import { waitFor, waitForSteady } from "./helpers/wait.ts";

const dir = mkdtempSync(join(tmpdir(), "wasmnet-identity-"));
const secret = new TextEncoder().encode("an-hs256-secret-of-at-least-32-bytes!!");
writeFileSync(join(dir, "secret.key"), secret);
const echo = echoServer();
const other = echoServer();

const policyText = (extra = "") => `
[network]
deny = ["*:25"]
allow = ["*"]
max_bandwidth_mbps = 0

[limits]
max_sessions_per_identity = 2
max_connections_per_identity = 2

[auth]
required = true
audience = "wasmnet"
hs256_secret_file = "secret.key"

[profiles.narrow.network]
allow = ["127.0.0.1:${echo.port}"]

[profiles.shared.limits]
max_bandwidth_mbps_per_identity = 4
max_sessions_per_identity = 4
max_connections_per_identity = 8

[profiles.metered.limits]
max_bytes_per_day = 200000
max_sessions_per_identity = 4
max_connections_per_identity = 8
${extra}`;
const policyFile = join(dir, "policy.toml");
writeFileSync(policyFile, policyText());

const logs: string[] = [];
let srv: Awaited<ReturnType<typeof startServer>>;
beforeAll(async () => {
  srv = await startServer({ policy: policyFile, logger: createLogger("debug", (l) => logs.push(l)) });
});
afterAll(async () => {
  await srv.stop();
  echo.stop();
  other.stop();
});

const issued: string[] = [];
async function token(sub: string, extra: { profile?: string; allow?: string[]; ttlSecs?: number; aud?: string } = {}): Promise<string> {
  const t = await createToken({ secret, sub, aud: extra.aud ?? "wasmnet", ttlSecs: extra.ttlSecs ?? 300, profile: extra.profile, allow: extra.allow });
  issued.push(t);
  return t;
}
const open = (t: string, framing: "json" | "binary" = "json") => TestClient.open(`${srv.wsUrl}?token=${t}`, framing);
const refusal = async (url: string, headers: Record<string, string> = {}) => {
  const r = await fetch(url.replace(/^ws/, "http"), { headers });
  return { status: r.status, body: (await r.text()).trim(), challenge: r.headers.get("www-authenticate") };
};

describe("tokens at the door", () => {
  test("no token when required, an expired one, a wrong audience: 401 with the reason; a huge one: 431", async () => {
    const none = await refusal(srv.wsUrl);
    expect([none.status, none.body]).toEqual([401, "a token is required"]);
    expect(none.challenge).toContain('error="invalid_token"');
    const expired = await createToken({ secret, sub: "alice", aud: "wasmnet", ttlSecs: 1, nowSecs: Math.floor(Date.now() / 1000) - 3600 });
    expect((await refusal(`${srv.wsUrl}?token=${expired}`)).status).toBe(401);
    const wrongAud = await token("alice", { aud: "someone-else" });
    expect((await refusal(`${srv.wsUrl}?token=${wrongAud}`)).body).toContain("aud");
    expect((await refusal(srv.wsUrl, { authorization: `Bearer ${"a".repeat(9000)}` })).status).toBe(431);
    const unknownProfile = await token("alice", { profile: "gold" });
    expect(await refusal(`${srv.wsUrl}?token=${unknownProfile}`)).toMatchObject({ status: 401, body: 'unknown profile "gold"' });
  });

  test("a good token: hello answers with the identity and profile; audit lines carry both", async () => {
    const c = await open(await token("alice", { profile: "narrow" }));
    c.send({ op: "hello", id: 0, version: 2, features: ["flow"] });
    expect(await c.next(0)).toMatchObject({ ev: "hello", identity: "alice", profile: "narrow" });
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    c.send({ op: "close", id: 1 });
    await waitFor(() => logs.some((l) => l.includes('"msg":"stream end"') && l.includes('"identity":"alice"') && l.includes('"profile":"narrow"')), "an audit line with identity and profile");
    c.close();
  });
});

describe("profiles and the token's allow list narrow, never widen", () => {
  test("a profile's allow list applies; a token's list narrows it further", async () => {
    const c = await open(await token("bob", { profile: "narrow" }));
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    expect((await c.connect(2, "127.0.0.1", other.port)).ev).toBe("denied"); // outside the profile
    c.close();
    const d = await open(await token("carol", { allow: [`127.0.0.1:${other.port}`] }));
    expect((await d.connect(1, "127.0.0.1", other.port)).ev).toBe("connected");
    const refused = await d.connect(2, "127.0.0.1", echo.port);
    expect(refused).toMatchObject({ ev: "denied" });
    if (refused.ev === "denied") expect(refused.msg).toContain("token's allow list");
    d.close();
  });

  test("a token cannot widen: its allow list never lifts a deny of its profile", async () => {
    const c = await open(await token("dave", { profile: "narrow", allow: [`127.0.0.1:${other.port}`, "*"] }));
    expect((await c.connect(1, "127.0.0.1", other.port)).ev).toBe("denied");
    expect((await c.connect(2, "127.0.0.1", 25)).ev).toBe("denied"); // *:25 of the top level
    c.close();
  });
});

describe("per-identity limits hold across sessions", () => {
  test("max_sessions_per_identity: the third session of one identity is 429; another identity is unaffected", async () => {
    const t = await token("erin");
    const a = await open(t);
    const b = await open(t);
    const third = await refusal(`${srv.wsUrl}?token=${t}`, { upgrade: "websocket", connection: "Upgrade", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" });
    expect([third.status, third.body]).toEqual([429, "max_sessions_per_identity (2) reached for erin"]);
    const f = await open(await token("frank"));
    a.close();
    await waitFor(async () => (await refusal(`${srv.wsUrl}?token=${t}`)).status === 426, "a session unit back once one closes");
    b.close();
    f.close();
  });

  test("max_connections_per_identity counts the identity's sessions together: ELIMIT on the third", async () => {
    const t = await token("gina");
    const a = await open(t);
    const b = await open(t);
    expect((await a.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    expect((await b.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    const third = await a.connect(2, "127.0.0.1", echo.port);
    expect(third).toMatchObject({ ev: "error", code: "ELIMIT" });
    if (third.ev === "error") expect(third.msg).toContain("max_connections_per_identity (2)");
    b.send({ op: "close", id: 1 });
    await waitFor(async () => (await a.connect(3, "127.0.0.1", echo.port)).ev === "connected", { what: "a connection unit back", timeoutMs: 5000 });
    a.close();
    b.close();
  });

  test("max_connections_per_identity counts listeners and accepted connections: one over it is reset, never announced", async () => {
    const t = await token("hana");
    const a = await open(t);
    const b = await open(t, "binary");
    a.send({ op: "bind", id: 1, addr: "127.0.0.1", port: 0 }); // unit 1
    const l = await a.next(1);
    expect(l.ev).toBe("listening");
    const port = (l as { port: number }).port;
    expect((await b.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected"); // unit 2
    // A third unit: the inbound connection is reset, and `a` never hears of it.
    expect(await refused(port)).toBe(true);
    expect(a.events.filter((e) => e.ev === "accepted")).toEqual([]);
    await waitFor(() => logs.some((line) => line.includes('"inbound refused"') && line.includes("max_connections_per_identity (2) reached for hana")), "the refusal's log line");
    // b gives its unit back: the next inbound connection is accepted, and what its peer sent at once arrives.
    b.send({ op: "close", id: 1 });
    expect((await b.next(1)).ev).toBe("closed");
    const { peer, connId } = await dialAccepted(a, 1, port, "sent before accepted");
    a.send({ op: "send", id: connId, data: new TextEncoder().encode("back") });
    await waitFor(() => peer.text() === "back", "the reply at the peer");
    // Now at 2 again (listener + accepted): b's new connect is ELIMIT.
    expect(await b.connect(2, "127.0.0.1", echo.port)).toMatchObject({ ev: "error", code: "ELIMIT" });
    peer.socket.end();
    a.close();
    b.close();
  });

  test("max_bandwidth_mbps_per_identity: two sessions of one identity together get the identity's rate (±30 %, not 2×)", async () => {
    const RATE = 4 * 125_000;
    const src = sourceServer(64 * 1024 * 1024);
    const t = await token("hugo", { profile: "shared" });
    const sessions = [await open(t, "binary"), await open(t, "binary")];
    let bytes = 0;
    let t0 = 0;
    const SKIP = 1500; // the shared bucket starts with one second of burst
    const WINDOW = 3000;
    for (const c of sessions) {
      c.keepEvents = false;
      c.onEvent = (e) => {
        const at = performance.now() - t0;
        if (e.ev === "data" && at >= SKIP && at < SKIP + WINDOW) bytes += e.data.length;
      };
    }
    t0 = performance.now();
    for (const c of sessions) c.send({ op: "connect", id: 1, addr: "127.0.0.1", port: src.port });
    await Bun.sleep(SKIP + WINDOW + 50); // the measure is a fixed window of time
    const rate = (bytes * 1000) / WINDOW;
    console.log(`two sessions of one identity: ${Math.round(rate)} B/s together (identity rate ${RATE})`);
    // One bucket for the identity: together about its rate, far from the 2× of a bucket per
    // session. ±30 %: a loaded 2-core machine delivers late (±15 % failed once at load 2.5).
    expect(rate / RATE).toBeGreaterThan(0.7);
    expect(rate / RATE).toBeLessThan(1.3);
    for (const c of sessions) c.close();
    src.stop();
  }, 20_000);

  test("max_bytes_per_day: when spent, the identity's streams end with ELIMIT daily quota and new opens are refused", async () => {
    const t = await token("iris", { profile: "metered" });
    const a = await open(t, "binary");
    const b = await open(t, "binary");
    expect((await a.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    expect((await b.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    // 2 × 60 KB each way from a; b's stream is ended too: the quota is the identity's.
    for (let i = 0; i < 2; i++) a.send({ op: "send", id: 1, data: new Uint8Array(60_000) });
    const ended = await a.next(1);
    expect(ended).toMatchObject({ ev: "error", code: "ELIMIT" });
    if (ended.ev === "error") expect(ended.msg).toContain("daily quota");
    b.send({ op: "send", id: 1, data: new Uint8Array(10) });
    expect(await b.next(1)).toMatchObject({ ev: "error", code: "ELIMIT" });
    expect(await b.connect(2, "127.0.0.1", echo.port)).toMatchObject({ ev: "error", code: "ELIMIT" });
    a.close();
    b.close();
  });
});

describe("live reload", () => {
  test("a valid file applies to new opens while open streams go on; an invalid one keeps the running policy", async () => {
    const c = await open(await token("jack"));
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    writeFileSync(policyFile, policyText().replace('deny = ["*:25"]', `deny = ["*:25", "127.0.0.1:${echo.port}"]`));
    expect((await srv.handler.reload()).ok).toBe(true);
    c.send({ op: "send", id: 1, data: new TextEncoder().encode("still open") });
    await c.waitBytes(1, 10);
    expect((await c.connect(2, "127.0.0.1", echo.port)).ev).toBe("denied");
    writeFileSync(policyFile, "[network]\ndeny = [\"not an entry\"\n");
    const bad = await srv.handler.reload();
    expect(bad.ok).toBe(false);
    expect((await c.connect(3, "127.0.0.1", echo.port)).ev).toBe("denied"); // the last good policy still runs
    expect((await c.connect(4, "127.0.0.1", other.port)).ev).toBe("connected");
    const metrics = await (await fetch(new URL("/metrics", srv.url))).text();
    expect(metrics).toContain('wasmnet_reloads_total{result="ok"} 1');
    expect(metrics).toContain('wasmnet_reloads_total{result="error"} 1');
    writeFileSync(policyFile, policyText());
    expect((await srv.handler.reload()).ok).toBe(true);
    c.close();
  });
});

test("no token text reaches any log line", () => {
  expect(issued.length).toBeGreaterThan(5);
  const all = logs.join("\n");
  for (const t of issued) {
    expect(all.includes(t)).toBe(false);
    expect(all.includes(t.split(".")[2]!)).toBe(false); // not even the signature
  }
  expect(all).toContain('"path":"/"'); // refusals were logged, by path without the query
});
