// The library: wasmnet() mounted inside the user's own Bun.serve, next to a route of its own.
import { expect, test } from "bun:test";
import { wasmnet } from "../src/index.ts";
import { silentLogger } from "../src/log.ts";
import { TestClient } from "./helpers/client.ts";
import { echoServer } from "./helpers/targets.ts";

test("wasmnet() mounts next to the application's own routes", async () => {
  const echo = echoServer();
  const net = wasmnet({ noPolicy: true, logger: silentLogger });
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    routes: { "/api/hello": new Response("hello from the app") },
    fetch(req, srv) {
      if (new URL(req.url).pathname === "/net") return net.upgrade(req, srv);
      return new Response("not found", { status: 404 });
    },
    websocket: net.websocket,
  });
  try {
    expect(await (await fetch(new URL("/api/hello", server.url))).text()).toBe("hello from the app");
    expect((await fetch(new URL("/elsewhere", server.url))).status).toBe(404);
    // A plain GET to the mount point is not an upgrade.
    expect((await fetch(new URL("/net", server.url))).status).toBe(426);
    const c = await TestClient.open(`ws://127.0.0.1:${server.port}/net`, "binary");
    expect(await c.connect(1, "127.0.0.1", echo.port)).toEqual({ ev: "connected", id: 1 });
    c.send({ op: "send", id: 1, data: new TextEncoder().encode("mounted") });
    await c.waitBytes(1, 7);
    expect(new TextDecoder().decode(c.received(1))).toBe("mounted");
    c.close();
  } finally {
    net.drain();
    await server.stop(true);
    echo.stop();
  }
});

test("createServer serves /healthz and turns it 503 while stopping", async () => {
  const { createServer } = await import("../src/index.ts");
  const srv = await createServer({ hostname: "127.0.0.1", port: 0, logger: silentLogger }).listen();
  const url = new URL("/healthz", srv.url);
  const ok = await fetch(url);
  expect([ok.status, await ok.text()]).toEqual([200, "ok\n"]);
  const c = await TestClient.open(`ws://127.0.0.1:${srv.port}/`);
  const closing = new Promise<number>((r) => c.ws.addEventListener("close", (e) => r(e.code)));
  srv.handler.drain(0.2); // open sessions get 0.2 s (not the default drain_secs), then 1001
  expect((await fetch(url)).status).toBe(503);
  expect(await closing).toBe(1001);
  await srv.stop();
});

test("drain() called twice returns one promise, and it resolves once the last session is gone", async () => {
  const { createServer } = await import("../src/index.ts");
  const { waitFor } = await import("./helpers/wait.ts");
  const srv = await createServer({ hostname: "127.0.0.1", port: 0, logger: silentLogger }).listen();
  try {
    const c = await TestClient.open(`ws://127.0.0.1:${srv.port}/`);
    const first = srv.handler.drain(60);
    const second = srv.handler.drain(60);
    expect(second).toBe(first);
    const settled: string[] = [];
    void first.then(() => settled.push("first"));
    void second.then(() => settled.push("second"));
    c.close();
    await waitFor(() => settled.length === 2, { what: "both drain() promises to resolve", detail: () => settled });
  } finally {
    await srv.stop();
  }
});

test("a reload that changes a start-up-only setting (max_memory_mb) says it needs a restart; one that changes only live settings does not", async () => {
  const { createLogger } = await import("../src/log.ts");
  const { mkdtempSync, rmSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = mkdtempSync(join(tmpdir(), "wasmnet-reload-"));
  const file = join(dir, "policy.toml");
  const write = (memoryMb: number, maxSessions: number) => writeFileSync(file, `[network]\ndeny = ["nonpublic"]\n[limits]\nmax_memory_mb = ${memoryMb}\nmax_sessions = ${maxSessions}\n`);
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger("info", (l) => void lines.push(JSON.parse(l)));
  try {
    write(256, 10);
    const net = wasmnet({ policy: file, logger });
    const restartWarnings = () => lines.filter((l) => String(l.msg).includes("until a restart"));
    write(256, 20); // max_sessions is read at every admission
    expect(await net.reload()).toMatchObject({ ok: true, restartNeeded: [] });
    expect(restartWarnings()).toEqual([]);
    write(512, 20);
    expect(await net.reload()).toMatchObject({ ok: true, restartNeeded: ["limits.max_memory_mb"] });
    expect(restartWarnings()).toMatchObject([{ level: "warn", settings: ["limits.max_memory_mb"] }]);
    // The running budget is still the start-up one, as the warning says.
    expect(net.ctx.memory.budget).toBe(256 * 1024 * 1024);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a policy that leaves internal addresses reachable is warned about at start-up", async () => {
  const { createLogger } = await import("../src/log.ts");
  const { loadPolicyFile, defaultPolicy } = await import("../src/policy/load.ts");
  const lines: string[] = [];
  const logger = createLogger("warn", (l) => void lines.push(l));
  wasmnet({ policy: loadPolicyFile(new URL("./fixtures/original-policy.toml", import.meta.url).pathname), logger });
  const warn = lines.map((l) => JSON.parse(l)).find((l) => String(l.msg).includes("internal addresses"));
  expect(warn?.reachable).toEqual(["::1", "fd00::1"]);
  lines.length = 0;
  wasmnet({ policy: defaultPolicy(), logger });
  expect(lines.some((l) => l.includes("internal addresses"))).toBe(false);
});
