// `--workers N`: a supervisor and N worker processes on one port (reusePort), as real processes
// on 127.0.0.1. Which worker serves what is observed, not guessed: every worker log line carries
// its pid (sessions are opened one at a time, so the k-th "session open" line is the k-th
// session's), and for plain HTTP requests the worker that accepted the connection is found in
// /proc (the process holding the server side of the socket).
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RestartBackoff } from "../src/cluster/backoff.ts";
import type { WorkerMessage } from "../src/cluster/messages.ts";
import { PeerQuestions } from "../src/cluster/peer-questions.ts";
import { RetiredCounters, SeriesGatherer } from "../src/cluster/peer-series.ts";
import { encodeRole, selfCommand, WORKER_ENV, workerCount, workerRole } from "../src/cluster/role.ts";
import { TestClient } from "./helpers/client.ts";
import { spawnServer, type Child } from "./helpers/spawn.ts";
import { echoServer } from "./helpers/targets.ts";
import { eventually, waitFor } from "./helpers/wait.ts";

const ROOT = join(import.meta.dir, "..");
const CLI = join(ROOT, "src/cli.ts");
const echo = echoServer();
const tmp = mkdtempSync(join(tmpdir(), "wasmnet-workers-"));
const children: Child[] = [];

afterAll(() => {
  for (const c of children) if (c.proc.exitCode === null) c.proc.kill("SIGKILL");
  echo.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** A policy that lets sessions reach the loopback echo target. */
function policyFile(extra = ""): string {
  const f = join(tmp, `policy-${Math.random().toString(36).slice(2)}.toml`);
  writeFileSync(f, `[network]\ndeny = ["*"]\nallow = ["127.0.0.1"]\n${extra}`);
  return f;
}

async function startCluster(args: string[], cmd?: string[]): Promise<Child> {
  const c = await spawnServer(["--log-level", "debug", ...args], cmd);
  children.push(c);
  return c;
}

type Line = Record<string, unknown> & { msg: string };

/** The complete JSON lines logged so far. */
function lines(c: Child): Line[] {
  const text = c.logs();
  return text
    .slice(0, text.lastIndexOf("\n") + 1)
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Line);
}
const logged = (c: Child, msg: string) => lines(c).filter((l) => l.msg === msg);

/** The workers' pids, from the supervisor's "listening" line. */
function workerPids(c: Child): number[] {
  return logged(c, "listening")[0]!.pids as number[];
}

/** A process that is gone: no such pid, or a zombie nobody has reaped yet. */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true;
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();

async function echoes(c: TestClient, text: string): Promise<void> {
  c.clearReceived(1);
  c.send({ op: "send", id: 1, data: enc.encode(text) });
  await c.waitBytes(1, text.length);
  expect(dec.decode(c.received(1))).toBe(text);
}

interface Placed {
  client: TestClient;
  pid: number;
}

/**
 * Opens sessions one at a time (each with a stream to the echo target, checked) until every pid
 * in `pids` serves at least one, and says which worker each landed on.
 */
async function sessionsOnEveryWorker(srv: Child, pids: number[], max = 40): Promise<Placed[]> {
  const placed: Placed[] = [];
  while (!pids.every((p) => placed.some((s) => s.pid === p))) {
    if (placed.length >= max) throw new Error(`${max} sessions all landed on ${[...new Set(placed.map((s) => s.pid))]}`);
    placed.push(await placeSession(srv, `session ${placed.length}`));
  }
  return placed;
}

/** Opens one session with a stream to the echo target (checked), and says which worker it landed on. */
async function placeSession(srv: Child, text: string): Promise<Placed> {
  const n = logged(srv, "session open").length + 1;
  const client = await TestClient.open(srv.wsUrl);
  expect((await client.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
  await echoes(client, text);
  await waitFor(() => logged(srv, "session open").length >= n, { what: `"session open" line ${n}`, detail: srv.logs });
  return { client, pid: logged(srv, "session open")[n - 1]!.pid as number };
}

// ---- which worker accepted a connection, from /proc -------------------------------------------

function serverSideInode(serverPort: number, clientPort: number): string | null {
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 10) continue;
    const local = parseInt(cols[1]!.split(":")[1]!, 16);
    const remote = parseInt(cols[2]!.split(":")[1]!, 16);
    if (local === serverPort && remote === clientPort) return cols[9]!;
  }
  return null;
}

function holds(pid: number, inode: string): boolean {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  return fds.some((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`;
    } catch {
      return false;
    }
  });
}

/** GET `path` on a fresh connection; says which of `pids` accepted it. */
async function getVia(port: number, path: string, pids: number[]): Promise<{ pid: number; status: number; body: string }> {
  let buf = "";
  let done!: () => void;
  const closed = new Promise<void>((r) => (done = r));
  const s = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(_s, d) {
        buf += dec.decode(d);
      },
      close: () => done(),
      error: () => done(),
    },
  });
  let pid = 0;
  await waitFor(
    () => {
      const inode = serverSideInode(port, s.localPort);
      pid = inode === null ? 0 : (pids.find((p) => holds(p, inode)) ?? 0);
      return pid !== 0;
    },
    { what: `the worker that accepted local port ${s.localPort}` },
  );
  s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
  await closed;
  return { pid, status: Number(buf.split(" ")[1]), body: buf.slice(buf.indexOf("\r\n\r\n") + 4) };
}

/** GETs on fresh connections until each of `pids` has answered once; the answers by pid. */
async function askEveryWorker(port: number, path: string, pids: number[], max = 60): Promise<Map<number, { status: number; body: string }>> {
  const by = new Map<number, { status: number; body: string }>();
  for (let i = 0; i < max && by.size < pids.length; i++) {
    const r = await getVia(port, path, pids);
    if (!by.has(r.pid)) by.set(r.pid, r);
  }
  if (by.size < pids.length) throw new Error(`${max} requests to ${path} were all answered by ${[...by.keys()]}`);
  return by;
}

function metric(body: string, name: string, labels = ""): number {
  const line = body.split("\n").find((l) => l.startsWith(`${name}${labels} `));
  if (!line) throw new Error(`no ${name}${labels} in /metrics:\n${body}`);
  return Number(line.slice(line.lastIndexOf(" ") + 1));
}

const closeCode = (c: TestClient) => new Promise<number>((r) => (c.closed ? r(c.closeCode) : c.ws.addEventListener("close", (e) => r(e.code))));

// ---- the tests ---------------------------------------------------------------------------------

describe("the supervisor's decisions", () => {
  test("a dead worker's counters stay in the totals; its gauges leave with it", () => {
    const r = new RetiredCounters();
    r.saw(1, [{ name: "wasmnet_sessions_total", value: 5 }, { name: "wasmnet_sessions", value: 2 }, { name: "wasmnet_worker_restarts_total", value: 1 }]);
    r.saw(1, [{ name: "wasmnet_sessions_total", value: 7 }, { name: "wasmnet_sessions", value: 3 }]);
    r.saw(2, [{ name: "wasmnet_sessions_total", value: 4 }, { name: "wasmnet_errors_total", labels: { code: "EPERM" }, value: 1 }]);
    r.died(1);
    expect(r.series).toEqual([{ name: "wasmnet_sessions_total", value: 7 }]);
    r.died(2);
    r.died(3); // never seen: nothing to keep
    expect(r.series).toEqual([{ name: "wasmnet_sessions_total", value: 11 }, { name: "wasmnet_errors_total", labels: { code: "EPERM" }, value: 1 }]);
  });

  test("restart backoff: 100 ms doubling to 10 s; a worker that served 10 s starts the series again", () => {
    const b = new RestartBackoff();
    expect([null, null, null, 50, 9_999].map((up) => b.died(up))).toEqual([100, 200, 400, 800, 1600]);
    for (let i = 0; i < 10; i++) b.died(null);
    expect(b.died(null)).toBe(10_000);
    expect(b.died(10_000)).toBe(100);
    expect(b.died(null)).toBe(200);
  });

  test("a worker's role needs the variable, valid numbers and an IPC channel", () => {
    const env = { [WORKER_ENV]: encodeRole({ slot: 1, count: 2, port: 9000 }) };
    expect(workerRole(env, true)).toEqual({ slot: 1, count: 2, port: 9000 });
    expect(workerRole(env, false)).toBeNull(); // set by hand, or inherited: not a worker
    expect(workerRole({}, true)).toBeNull();
    for (const bad of ["{", "null", '{"slot":2,"count":2,"port":9000}', '{"slot":0,"count":2,"port":0}', '{"slot":0.5,"count":2,"port":1}'])
      expect(workerRole({ [WORKER_ENV]: bad }, true)).toBeNull();
  });

  test("auto is the CPU count; the command line re-runs the binary, or bun with its flags and the script", () => {
    expect(workerCount("auto", 8)).toBe(8);
    expect(workerCount("auto", 0)).toBe(1);
    expect(workerCount(3, 8)).toBe(3);
    const base = { execPath: "/usr/bin/bun", execArgv: ["--smol"], argv: ["/usr/bin/bun", "/app/src/cli.ts", "--workers", "2"] };
    expect(selfCommand(["--workers", "2"], { ...base, standalone: false })).toEqual(["/usr/bin/bun", "--smol", "/app/src/cli.ts", "--workers", "2"]);
    expect(selfCommand(["--workers", "2"], { execPath: "/opt/wasmnet", execArgv: [], argv: ["bun", "/$bunfs/root/wasmnet"], standalone: true })).toEqual(["/opt/wasmnet", "--workers", "2"]);
  });

  test("gathering series: every answer, or what came in time (a silent or dead worker is left out)", async () => {
    const g = new SeriesGatherer(50);
    const asked: [number, number][] = [];
    const all = g.gather([11, 12], (pid, q) => asked.push([pid, q]));
    for (const [pid, q] of asked) g.answer(pid, q, [{ name: "wasmnet_sessions", value: pid }]);
    expect(await all).toEqual({ lists: [[{ name: "wasmnet_sessions", value: 11 }], [{ name: "wasmnet_sessions", value: 12 }]], missing: [] });

    asked.length = 0;
    const partial = g.gather([21, 22, 23], (pid, q) => asked.push([pid, q]));
    g.answer(21, asked[0]![1], []);
    g.answer(21, asked[0]![1], [{ name: "wasmnet_sessions", value: 99 }]); // a duplicate is ignored
    g.gone(22);
    expect(await partial).toEqual({ lists: [[]], missing: [23] }); // after the 50 ms wait
    expect(await g.gather([], () => {})).toEqual({ lists: [], missing: [] });
  });

  test("concurrent scrapes share one question to the supervisor; each still tells it what it shows", async () => {
    const sent: WorkerMessage[] = [];
    const peers = new PeerQuestions((m) => sent.push(m), { warn() {} }, () => true);
    const own = (n: number) => [{ name: "wasmnet_sessions_total" as const, value: n }];
    const first = peers.ask(own(1));
    const second = peers.ask(own(2));
    expect(sent).toEqual([
      { t: "peers?", q: 1, own: own(1) },
      { t: "shown", own: own(2) },
    ]);
    const lists = [[{ name: "wasmnet_sessions_total" as const, value: 9 }]];
    peers.answered(1, lists);
    expect(await first).toBe(lists);
    expect(await second).toBe(lists);
    void peers.ask(own(3)); // answered: the next scrape asks again
    expect(sent.at(-1)).toEqual({ t: "peers?", q: 2, own: own(3) });
    peers.answered(2, []);
  });
});

test("--help shows --workers", () => {
  const r = Bun.spawnSync([process.execPath, CLI, "--help"], { stdout: "pipe", stderr: "pipe" });
  expect(r.stdout.toString()).toMatch(/--workers.*auto/);
});

describe("--workers 2", () => {
  test("sessions land on both workers; /metrics from either worker counts the sessions of both; SIGHUP reloads every worker", async () => {
    const srv = await startCluster(["--workers", "2", "--policy", policyFile()]);
    const pids = workerPids(srv);
    expect(pids).toHaveLength(2);
    expect(new Set(logged(srv, "worker listening").map((l) => l.pid))).toEqual(new Set(pids));
    expect(logged(srv, "worker listening").every((l) => l.port === srv.port)).toBe(true);

    const placed = await sessionsOnEveryWorker(srv, pids);
    const answers = await askEveryWorker(srv.port, "/metrics", pids);
    for (const [pid, m] of answers) {
      expect({ pid, status: m.status }).toEqual({ pid, status: 200 });
      expect(metric(m.body, "wasmnet_sessions")).toBe(placed.length);
      expect(metric(m.body, "wasmnet_sockets", '{kind="tcp"}')).toBe(placed.length);
      expect(metric(m.body, "wasmnet_workers")).toBe(2);
      expect(metric(m.body, "wasmnet_worker_restarts_total")).toBe(0);
    }
    for (const [, h] of await askEveryWorker(srv.port, "/healthz", pids)) expect(h.status).toBe(200);

    process.kill(srv.proc.pid, "SIGHUP");
    await waitFor(() => new Set(logged(srv, "policy reloaded").map((l) => l.pid)).size === 2, { what: '"policy reloaded" from both workers', detail: srv.logs });
    expect(new Set(logged(srv, "policy reloaded").map((l) => l.pid))).toEqual(new Set(pids));
    for (const s of placed) await echoes(s.client, "after the reload");

    for (const s of placed) s.client.close();
    expect(await srv.stop("SIGTERM")).toBe(0);
  });

  test("kill -9 of a worker: the supervisor restarts it, and the sessions on the other worker go on", async () => {
    const srv = await startCluster(["--workers", "2", "--no-policy"]);
    const pids = workerPids(srv);
    const placed = await sessionsOnEveryWorker(srv, pids);
    const [victim, survivor] = pids as [number, number];
    const codes = new Map(placed.map((s) => [s, closeCode(s.client)]));
    // A scrape before the kill: the totals it shows must not fall when a worker dies.
    const before = await askEveryWorker(srv.port, "/metrics", pids);
    for (const [, m] of before) expect(metric(m.body, "wasmnet_sessions_total")).toBe(placed.length);
    const bytesUpBefore = Math.max(...[...before.values()].map((m) => metric(m.body, "wasmnet_bytes_total", '{direction="up"}')));

    process.kill(victim, "SIGKILL");
    // Exactly the victim's sessions end…
    for (const s of placed.filter((s) => s.pid === victim)) expect(await codes.get(s)).toBe(1006);
    // …and a new worker takes its slot.
    await waitFor(() => logged(srv, "worker listening").some((l) => !pids.includes(l.pid as number)), { what: "a restarted worker listening", detail: srv.logs });
    const fresh = logged(srv, "worker listening").find((l) => !pids.includes(l.pid as number))!.pid as number;
    expect(logged(srv, "worker exited").map((l) => l.pid)).toEqual([victim]);
    // The survivor's sessions were not touched: still open, still echoing.
    for (const s of placed.filter((s) => s.pid === survivor)) {
      expect(s.client.closed).toBe(false);
      await echoes(s.client, "still here");
    }
    // The new worker serves, and /metrics knows about the restart.
    const more = await sessionsOnEveryWorker(srv, [fresh]);
    const stillOpen = placed.filter((s) => s.pid === survivor).length + more.length;
    await eventually(
      async () => {
        for (const [, m] of await askEveryWorker(srv.port, "/metrics", [survivor, fresh])) {
          expect(metric(m.body, "wasmnet_workers")).toBe(2);
          expect(metric(m.body, "wasmnet_worker_restarts_total")).toBe(1);
          expect(metric(m.body, "wasmnet_sessions")).toBe(stillOpen);
          // The dead worker's sessions and bytes stay counted.
          expect(metric(m.body, "wasmnet_sessions_total")).toBe(placed.length + more.length);
          expect(metric(m.body, "wasmnet_bytes_total", '{direction="up"}')).toBeGreaterThan(bytesUpBefore);
        }
      },
      "both workers to report 2 workers, 1 restart, every open session and every session ever opened",
    );
    expect(await srv.stop("SIGTERM")).toBe(0);
    expect(gone(survivor) && gone(fresh)).toBe(true);
  });

  test("without Redis the supervisor counts for both workers: per-IP and per-identity caps hold across them; a killed worker's units come back", async () => {
    const srv = await startCluster(["--workers", "2", "--policy", policyFile("[limits]\nmax_sessions_per_ip = 4\nmax_connections_per_identity = 5\n")]);
    const pids = workerPids(srv);
    const placed: Placed[] = [];
    for (let i = 0; i < 4; i++) placed.push(await placeSession(srv, `session ${i}`)); // 4 sessions, 4 connections
    console.log(`4 sessions placed: ${pids.map((p) => placed.filter((s) => s.pid === p).length).join(" + ")} on the two workers`);
    // Every worker refuses the fifth session, whichever of them holds the four.
    for (const [pid, r] of await askEveryWorker(srv.port, "/", pids)) expect({ pid, status: r.status, body: r.body.trim() }).toEqual({ pid, status: 429, body: "max_sessions_per_ip (4) reached for 127.0.0.1" });
    // The fifth connection of the identity (anonymous: the IP) opens; a sixth is ELIMIT wherever it is asked.
    expect((await placed[0]!.client.connect(2, "127.0.0.1", echo.port)).ev).toBe("connected");
    for (const s of placed.slice(1)) {
      const e = await s.client.connect(2, "127.0.0.1", echo.port);
      expect(e).toMatchObject({ ev: "error", code: "ELIMIT" });
      expect(e.ev === "error" && e.msg).toContain("max_connections_per_identity (5)");
    }
    // kill -9 of the worker holding the first session: its units come back with its exit.
    const victim = placed[0]!.pid;
    const lost = placed.filter((s) => s.pid === victim);
    const codes = lost.map((s) => closeCode(s.client));
    process.kill(victim, "SIGKILL");
    for (const code of codes) expect(await code).toBe(1006);
    await waitFor(() => logged(srv, "worker listening").some((l) => !pids.includes(l.pid as number)), { what: "a restarted worker listening", detail: srv.logs });
    const live = [...pids.filter((p) => p !== victim), logged(srv, "worker listening").find((l) => !pids.includes(l.pid as number))!.pid as number];
    // Exactly the lost sessions' places are free again: that many more open, then both refuse.
    const more: Placed[] = [];
    for (let i = 0; i < lost.length; i++) more.push(await placeSession(srv, `again ${i}`));
    for (const [pid, r] of await askEveryWorker(srv.port, "/", live)) expect({ pid, status: r.status }).toEqual({ pid, status: 429 });
    for (const s of [...placed, ...more]) s.client.close();
    expect(await srv.stop("SIGTERM")).toBe(0);
  });

  test("without Redis max_bytes_per_day is one total for both workers: bytes spent on one close the other's opens", async () => {
    const srv = await startCluster(["--workers", "2", "--policy", policyFile("[limits]\nmax_bytes_per_day = 200000\n")]);
    const pids = workerPids(srv);
    const placed = await sessionsOnEveryWorker(srv, pids);
    const spender = placed[0]!;
    const other = placed.find((s) => s.pid !== spender.pid)!;
    // The spender's worker sees its own bytes at once: 2 × 60 KB each way ends its stream.
    for (let i = 0; i < 2; i++) spender.client.send({ op: "send", id: 1, data: new Uint8Array(60_000) });
    const ended = await spender.client.next(1);
    expect(ended).toMatchObject({ ev: "error", code: "ELIMIT" });
    expect(ended.ev === "error" && ended.msg).toContain("daily quota");
    // The other worker learns the total from the supervisor (flushed every second): its opens are then refused too.
    let id = 10;
    await waitFor(
      async () => {
        const e = await other.client.connect(++id, "127.0.0.1", echo.port);
        if (e.ev === "connected") other.client.send({ op: "close", id });
        return e.ev === "error" && e.code === "ELIMIT" && e.msg.includes("daily quota");
      },
      { what: "the other worker to refuse opens once the identity's day is spent", timeoutMs: 10_000, detail: srv.logs },
    );
    for (const s of placed) s.client.close();
    expect(await srv.stop("SIGTERM")).toBe(0);
  });

  test("SIGTERM: every worker drains (/healthz 503 on each, open sessions keep working); a second SIGTERM ends it at once with 1001", async () => {
    // A drain far longer than the test may take, so nothing here races its end.
    const srv = await startCluster(["--workers", "2", "--no-policy", "--drain-secs", "600"]);
    const pids = workerPids(srv);
    const placed = await sessionsOnEveryWorker(srv, pids);
    const codes = placed.map((s) => closeCode(s.client));

    process.kill(srv.proc.pid, "SIGTERM");
    await waitFor(() => new Set(logged(srv, "draining").map((l) => l.pid)).size === 2, { what: "both workers draining", detail: srv.logs });
    for (const [, h] of await askEveryWorker(srv.port, "/healthz", pids)) expect(h.status).toBe(503);
    for (const s of placed) await echoes(s.client, "draining");
    await expect(TestClient.open(srv.wsUrl)).rejects.toThrow(); // new sessions are refused

    process.kill(srv.proc.pid, "SIGTERM");
    expect(await Promise.all(codes)).toEqual(placed.map(() => 1001));
    expect(await srv.proc.exited).toBe(0);
    for (const pid of pids) expect(gone(pid)).toBe(true);
  });

  test("SIGTERM alone: once drain_secs have passed every session gets 1001, and the process group exits 0", async () => {
    const drainSecs = 2;
    const srv = await startCluster(["--workers", "2", "--no-policy", "--drain-secs", String(drainSecs)]);
    const pids = workerPids(srv);
    const placed = await sessionsOnEveryWorker(srv, pids);
    const closedAt = placed.map((s) => closeCode(s.client).then((code) => ({ code, at: performance.now() })));
    const signalledAt = performance.now();
    process.kill(srv.proc.pid, "SIGTERM");
    for (const c of await Promise.all(closedAt)) {
      expect(c.code).toBe(1001);
      // Not before the drain was up (a lower bound: a loaded machine only makes it later).
      expect(c.at - signalledAt).toBeGreaterThanOrEqual(drainSecs * 1000 - 50);
    }
    expect(await srv.proc.exited).toBe(0);
    for (const pid of pids) expect(gone(pid)).toBe(true);
  });

  test("the supervisor killed with SIGKILL: its workers drain and exit instead of holding a share of the port", async () => {
    const srv = await startCluster(["--workers", "2", "--no-policy", "--drain-secs", "0"]);
    const pids = workerPids(srv);
    srv.proc.kill("SIGKILL");
    await waitFor(() => pids.every(gone), { what: "both workers to exit", detail: srv.logs });
    expect(new Set(logged(srv, "the supervisor is gone: draining").map((l) => l.pid))).toEqual(new Set(pids));
  });
});

describe("start-up", () => {
  test("[server] workers in the policy, and a fixed port", async () => {
    const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
    const port = probe.port!;
    probe.stop(true);
    const c = Bun.spawn([process.execPath, CLI, "--host", "127.0.0.1", "--port", String(port), "--policy", policyFile("[server]\nworkers = 2\n")], { stdout: "pipe", stderr: "pipe" });
    let err = "";
    const reading = (async () => {
      for await (const chunk of c.stderr) err += dec.decode(chunk);
    })();
    try {
      await waitFor(() => err.includes('"msg":"listening"'), { what: "the listening line", timeoutMs: 15_000, detail: () => err, failIf: () => c.exitCode !== null && `exited ${c.exitCode}` });
      const line = JSON.parse(err.split("\n").find((l) => l.includes('"msg":"listening"'))!) as { port: number; workers: number; pids: number[] };
      expect(line.port).toBe(port);
      expect(line.workers).toBe(2);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    } finally {
      c.kill("SIGTERM");
      expect(await c.exited).toBe(0);
      await reading;
    }
  });

  const startFails = (args: string[]) => {
    const r = Bun.spawnSync([process.execPath, CLI, "--host", "127.0.0.1", "--workers", "2", ...args], { stdout: "pipe", stderr: "pipe", timeout: 30_000 });
    return { code: r.exitCode, err: r.stderr.toString() };
  };

  test("a bad policy file: exit 2 with the file's error", () => {
    const f = join(tmp, "bad.toml");
    writeFileSync(f, "[network]\nallow = 7\n");
    const r = startFails(["--port", "0", "--policy", f]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(f);
  });

  test("a worker that cannot start (a key file the policy check passes but loading refuses): the supervisor exits 2 with the worker's error, no restarts", () => {
    // The policy loader (which the supervisor runs too) checks the file exists; reading the key
    // happens when a worker starts, and a 1-byte HS256 secret is refused there.
    const secret = join(tmp, "short-secret");
    writeFileSync(secret, "x");
    const r = startFails(["--port", "0", "--policy", policyFile(`[auth]\naudience = "x"\nhs256_secret_file = "${secret}"\n`)]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`wasmnet: ${secret}: the HS256 secret is 1 bytes`);
    expect(r.err.match(/"msg":"worker started"/g)).toHaveLength(2);
    expect(r.err).not.toContain('"msg":"restarting worker"');
  });

  test("the port taken by a process without reusePort: exit 2 with the worker's error", () => {
    const holder = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const r = startFails(["--port", String(holder.port), "--no-policy"]);
      expect(r.code).toBe(2);
      expect(r.err).toContain(String(holder.port));
      expect(r.err).not.toContain('"msg":"restarting worker"');
    } finally {
      holder.stop(true);
    }
  });
});

describe("the programs that re-execute themselves", () => {
  const relayAndStop = async (srv: Child) => {
    const pids = workerPids(srv);
    expect(pids).toHaveLength(2);
    const placed = await sessionsOnEveryWorker(srv, pids);
    const codes = placed.map((s) => closeCode(s.client));
    expect(await srv.stop("SIGTERM")).toBe(0);
    expect(await Promise.all(codes)).toEqual(placed.map(() => 1001));
  };

  test("the npm bin (a link to src/cli.ts run through its #! line)", async () => {
    const bin = join(tmp, "bin");
    Bun.spawnSync(["mkdir", "-p", bin]);
    symlinkSync(CLI, join(bin, "wasmnet"));
    const srv = await spawnServer(["--workers", "2", "--no-policy", "--log-level", "debug"], [join(bin, "wasmnet")], {
      ...(process.env as Record<string, string>),
      PATH: `${join(process.execPath, "..")}:${join(ROOT, "node_modules/.bin")}:${process.env.PATH}`,
    });
    children.push(srv);
    await relayAndStop(srv);
  });

  test("the compiled binary (npm run build)", async () => {
    const { build } = await import("../scripts/build.ts");
    const out = join(tmp, "wasmnet");
    await build({ outfile: out, skipClient: existsSync(join(ROOT, "client/dist/wasmnet-client.js")) });
    const srv = await startCluster(["--workers", "2", "--no-policy"], [out]);
    // The workers are the binary itself, not bun running a script.
    for (const pid of workerPids(srv)) expect(readlinkSync(`/proc/${pid}/exe`)).toBe(out);
    await relayAndStop(srv);
  }, 120_000);
});
