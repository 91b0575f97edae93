// Every stream leaves one audit log line when it ends — session, requested name,
// resolved address, the rule that decided, bytes each way, duration, close reason.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createLogger } from "../src/log.ts";
import { parsePolicy } from "../src/policy/load.ts";
import { TestClient } from "./helpers/client.ts";
import { startServer } from "./helpers/server.ts";
import { echoServer, freePort, sourceServer } from "./helpers/targets.ts";
import { waitFor } from "./helpers/wait.ts";

type Line = Record<string, unknown> & { msg: string; level: string };
const lines: Line[] = [];
let srv: Awaited<ReturnType<typeof startServer>>;
const echo = echoServer();
const source = sourceServer(3000);

beforeAll(async () => {
  const policy = parsePolicy(`[network]\ndeny = ["*:25"]\nallow = ["*"]\n`, "audit.test.toml");
  const table: Record<string, string[]> = { "echo.test": ["127.0.0.1"], "source.test": ["127.0.0.1"] };
  srv = await startServer({
    policy,
    resolver: async (n) => table[n] ?? [],
    logger: createLogger("info", (l) => lines.push(JSON.parse(l))),
  });
});
afterAll(async () => {
  await srv.stop();
  echo.stop();
  source.stop();
});

const ends = (session?: string) => lines.filter((l) => l.msg === "stream end" && (session === undefined || l.session === session));

test("one line per stream end with session, name, addr, rule, bytes each way, duration, reason", async () => {
  const c = await TestClient.open(srv.wsUrl);
  const before = ends().length;
  // 1: by name, closed by the client after 5 bytes each way.
  expect((await c.connect(1, "echo.test", echo.port)).ev).toBe("connected");
  c.send({ op: "send", id: 1, data: new TextEncoder().encode("hello") });
  await c.waitBytes(1, 5);
  await Bun.sleep(30); // the stream lives at least 30 ms, so its logged duration must be at least 25
  c.send({ op: "close", id: 1 });
  await c.next(1);
  // 2: by IP literal; the target sends 3000 bytes and closes.
  expect((await c.connect(2, "127.0.0.1", source.port)).ev).toBe("connected");
  await c.next(2);
  // 3: refused by the target.
  const dead = freePort();
  expect((await c.connect(3, "source.test", dead)).ev).toBe("error");
  // 4: UDP.
  c.send({ op: "connect_udp", id: 4, addr: "echo.test", port: echo.port });
  expect((await c.next(4)).ev).toBe("udp_bound");
  const upBefore = srv.handler.ctx.metrics.bytesUp;
  c.send({ op: "send", id: 4, data: new Uint8Array(10) });
  await waitFor(() => srv.handler.ctx.metrics.bytesUp >= upBefore + 10, "the datagram sent (the server's bytes-up counter)");
  // 5: still open when the session ends.
  expect((await c.connect(5, "echo.test", echo.port)).ev).toBe("connected");
  c.close();
  await waitFor(() => ends().length - before >= 4 + 1, { what: "five audit lines", detail: () => ends().length - before });
  await Bun.sleep(50); // exactly one line per stream: give a duplicate 50 ms to (wrongly) show up

  const mine = ends().slice(before);
  expect(mine.length).toBe(5); // exactly one per stream
  const sid = mine[0]!.session;
  expect(typeof sid).toBe("string");
  for (const l of mine) {
    expect(l.session).toBe(sid);
    expect(l.level).toBe("info");
    for (const k of ["session", "id", "kind", "name", "addr", "port", "rule", "bytes_up", "bytes_down", "ms", "reason"]) expect(l).toHaveProperty(k);
    expect(typeof l.ms).toBe("number");
    expect(l.ms as number).toBeGreaterThanOrEqual(0);
    expect(typeof l.reason).toBe("string");
  }
  const byId = new Map(mine.map((l) => [l.id as number, l]));
  expect(byId.get(1)).toMatchObject({ kind: "tcp", name: "echo.test", addr: "127.0.0.1", port: echo.port, rule: "*", bytes_up: 5, bytes_down: 5, reason: "closed by client" });
  expect(byId.get(1)!.ms as number).toBeGreaterThanOrEqual(25);
  expect(byId.get(2)).toMatchObject({ kind: "tcp", name: null, addr: "127.0.0.1", port: source.port, rule: "*", bytes_up: 0, bytes_down: 3000, reason: "target closed" });
  expect(byId.get(3)).toMatchObject({ kind: "tcp", name: "source.test", addr: "127.0.0.1", port: dead, bytes_up: 0, bytes_down: 0 });
  expect(String(byId.get(3)!.reason)).toContain("refused");
  expect(byId.get(4)).toMatchObject({ kind: "udp", name: "echo.test", addr: "127.0.0.1", port: echo.port, rule: "*", bytes_up: 10, reason: "session closed" });
  expect(byId.get(5)).toMatchObject({ kind: "tcp", name: "echo.test", reason: "session closed" });
});

test("a denied request leaves a `denied` line with the rule and no stream end; a failed look-up leaves a stream end", async () => {
  const c = await TestClient.open(srv.wsUrl);
  const before = lines.length;
  expect(await c.connect(1, "echo.test", 25)).toMatchObject({ ev: "denied" });
  expect(await c.connect(2, "nowhere.test", 80)).toMatchObject({ ev: "error", code: "ENOTFOUND" });
  c.close();
  await waitFor(() => lines.slice(before).some((l) => l.msg === "stream end"), "the failed look-up's stream end line");
  await Bun.sleep(50); // the denied request must leave no stream end: give one 50 ms to (wrongly) show up
  const mine = lines.slice(before);
  const denied = mine.filter((l) => l.msg === "denied");
  expect(denied.length).toBe(1);
  expect(denied[0]).toMatchObject({ id: 1, target: "echo.test:25", rule: "*:25" });
  expect(typeof denied[0]!.session).toBe("string");
  const streamEnds = mine.filter((l) => l.msg === "stream end");
  expect(streamEnds.length).toBe(1);
  expect(streamEnds[0]).toMatchObject({ id: 2, name: "nowhere.test", port: 80, bytes_up: 0, bytes_down: 0 });
  expect(String(streamEnds[0]!.reason)).toContain("has no addresses");
});
