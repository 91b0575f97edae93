#!/usr/bin/env bun
// wasmnet benchmark: relay cost against a direct loopback baseline measured in the same run.
//
//   bun scripts/bench.ts [--quick] [--json] [--runs=N] [--only=echo1,download,echo8,sessions,connect,rtt,rss]
//                        [--inflight=KIB] [--mib=N] [--workers=1,2] [--sessions=N] [--profile[=DIR]]
//
// Process layout (same for direct and wasmnet, so the comparison is apples to apples):
//   main process      the bench client (Bun.connect for direct, Bun's WebSocket for wasmnet)
//   child "target"    echo + download servers (scripts/bench/target.ts)
//   child "server"    wasmnet: bun src/cli.ts --no-policy --host 127.0.0.1 --port N --log-level error
//                     (the many-session echo also runs one with --workers N per count in --workers;
//                     its CPU is the supervisor's plus every worker's)
//   child "holder"    direct RSS baseline: a process holding N plain Bun.connect sockets
// Throughput measures run one hashed verification pass (also the warm-up), then --runs timed
// passes interleaved direct / wasmnet / wasmnet+flow, and report the median.
import type { Subprocess } from "bun";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { encodeBinaryRequest } from "../src/protocol/binary.ts";
import type { Event } from "../src/protocol/messages.ts";
import { CHUNK, chunkAt, expectedHash, freePort, KIB, Lines, median, MIB, POOL_BYTES, sleep, vmRssKiB, withTimeout } from "./bench/common.ts";
import { directConnect, directWrite, DownloadFlow, EchoFlow } from "./bench/flows.ts";
import { summarizeProfile } from "./bench/profile-summary.ts";
import { countSyscalls, perfAvailable, type Counts } from "./bench/syscalls.ts";
import { cpuCount, cpuMs, loadAverage, machineCpu, treeCpu, type MachineCpu, type TreeCpu } from "./bench/proc.ts";
import { describe, WnSession, type FrameStats } from "./bench/wsclient.ts";
import { wispEcho } from "./bench/wisp.ts";

const ROOT = join(import.meta.dir, "..");
const BUN = process.execPath;

// ---------------------------------------------------------------- options

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
/** `--name=value`, or `--name value` for the options that always take one (as npm passes `-- --workers 1,2`). */
const opt = (name: string): string | undefined => {
  const a = argv.find((x) => x.startsWith(`--${name}=`));
  if (a) return a.slice(name.length + 3);
  const i = argv.indexOf(`--${name}`);
  const next = argv[i + 1];
  return i >= 0 && VALUED.has(name) && next !== undefined && !next.startsWith("--") ? next : undefined;
};
const VALUED = new Set(["runs", "only", "inflight", "mib", "chunk", "variants", "idle", "settle", "workers", "sessions", "compare", "server-env", "compare-env"]);
if (flag("help") || flag("h")) {
  console.log(`usage: bun scripts/bench.ts [--quick] [--json] [--runs=N] [--only=echo1,download,echo8,sessions,connect,rtt,rss]
                          [--inflight=KIB] [--mib=N] [--workers=1,2] [--sessions=N] [--profile[=DIR]]
  --quick      smoke run: 16 MiB per throughput measure
  --json       machine-readable results on stdout (progress stays on stderr)
  --runs       timed repetitions per throughput measure (median reported; default 3)
  --only       run a subset of the measures
  --inflight   version-1 upload pacing: max un-echoed bytes per stream (default 512)
  --mib        bytes per throughput measure, overriding the default (256) / --quick (16)
  --chunk      KiB per upload write in the echo measures (default 64; e.g. 1 to see per-message costs)
  --variants   throughput variants to run (default direct,wasmnet,flow,wisp), e.g. for profiling one path
  --workers    worker counts for the many-session echo (default 1), e.g. 1,2: the server runs
               with --workers N and its CPU is the supervisor's plus every worker's
  --sessions   sessions (one stream each) in the many-session echo (default 32)
  --compare    DIR: also run every wasmnet measure (not rss) against the server in DIR (another
               checkout, e.g. a git worktree of main), interleaved with this tree's: rows marked [B]
  --server-env K=V,...   environment for this tree's server (A); --compare-env likewise for B
               (e.g. --compare=. --compare-env=MIMALLOC_PURGE_DELAY=-1 for an A/B of one setting)
  --idle       streams held open for the RSS measure (default 1000)
  --settle     ms to wait before each RSS reading (default 400)
  --profile    run the wasmnet server child under --cpu-prof (markdown profiles in DIR, default .bench/profile:
               server-samples.md counts samples; Bun's server.md charges idle time to what ran last)
  --syscalls   count the server's system calls and page faults per MiB in each timed run (needs perf)`);
  process.exit(0);
}
const QUICK = flag("quick");
const JSON_OUT = flag("json");
const RUNS = Number(opt("runs") ?? 3);
const ALL = ["echo1", "download", "echo8", "sessions", "connect", "rtt", "rss"] as const;
type MeasureKey = (typeof ALL)[number];
const ONLY = new Set((opt("only")?.split(",") ?? ALL).filter(Boolean) as MeasureKey[]);
for (const k of ONLY) if (!ALL.includes(k)) fail(`--only: unknown measure "${k}" (have ${ALL.join(", ")})`);
const MIB_PER = Number(opt("mib") ?? (QUICK ? 16 : 256));
/** Bytes per upload write (one `send` frame, one socket.write) in the echo measures. */
const UP_CHUNK = Number(opt("chunk") ?? CHUNK / KIB) * KIB;
if (!(UP_CHUNK >= KIB && UP_CHUNK <= POOL_BYTES && POOL_BYTES % UP_CHUNK === 0)) fail(`--chunk: a power of two from 1 to ${POOL_BYTES / KIB} (KiB)`);
const UNIT = Math.max(CHUNK, UP_CHUNK);
const TOTAL = Math.max(1, Math.round((MIB_PER * MIB) / (8 * UNIT))) * 8 * UNIT; // a multiple of 8 chunks
const INFLIGHT = Number(opt("inflight") ?? 512) * KIB;
const STREAMS = 8;
const SESSIONS = Number(opt("sessions") ?? 32);
const WORKERS = (opt("workers") ?? "1").split(",").filter(Boolean).map(Number);

/** Which server code and environment a wasmnet server child runs. */
interface Build {
  root: string;
  env: Record<string, string>;
  describe: string;
}
function parseEnv(s: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of s?.split(",").filter(Boolean) ?? []) {
    const eq = kv.indexOf("=");
    if (eq <= 0) fail(`bad environment setting "${kv}" (want NAME=VALUE)`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}
function describeBuild(root: string, env: Record<string, string>): string {
  let rev = "";
  try {
    rev = Bun.spawnSync(["git", "-C", root, "log", "-1", "--format=%h %s"]).stdout.toString().trim().slice(0, 60);
    if (rev && Bun.spawnSync(["git", "-C", root, "status", "--porcelain", "--", "src"]).stdout.toString().trim()) rev += ", src/ modified";
  } catch {}
  const vars = Object.entries(env).map(([k, v]) => `${k}=${v}`).join(" ");
  return `${root}${rev ? ` (${rev})` : ""}${vars ? ` with ${vars}` : ""}`;
}
const A_ENV = parseEnv(opt("server-env"));
const A_BUILD: Build = { root: ROOT, env: A_ENV, describe: describeBuild(ROOT, A_ENV) };
const COMPARE: Build | null = (() => {
  const dir = opt("compare");
  if (dir === undefined) return null;
  const root = resolve(dir);
  if (!existsSync(join(root, "src/cli.ts"))) fail(`--compare: no src/cli.ts in ${root}`);
  const env = parseEnv(opt("compare-env"));
  return { root, env, describe: describeBuild(root, env) };
})();
const B_KEY = "_b";
const B_MARK = "[B]";
const CONNECTS = 200;
const IDLE_STREAMS = Number(opt("idle") ?? 1000);
const SETTLE_MS = Number(opt("settle") ?? 400);
const VARIANTS = new Set(opt("variants")?.split(",") ?? ["direct", "wasmnet", "flow", "wisp"]);
const PROFILE_DIR = flag("profile") ? join(ROOT, ".bench/profile") : opt("profile");
const SYSCALLS = flag("syscalls");
if (!(SESSIONS >= 1 && SESSIONS <= 1000) || !WORKERS.length || !WORKERS.every((n) => Number.isInteger(n) && n >= 1 && n <= 64))
  fail("bad --sessions (1..1000) / --workers (a list of counts, e.g. 1,2)");
if (!(RUNS >= 1 && RUNS <= 20) || !(MIB_PER > 0) || !(INFLIGHT >= UP_CHUNK) || !(IDLE_STREAMS >= 1 && IDLE_STREAMS <= 10_000) || !(SETTLE_MS >= 0))
  fail("bad --runs / --mib / --inflight / --idle / --settle");
for (const v of VARIANTS) if (!["direct", "wasmnet", "flow", "wisp"].includes(v)) fail(`--variants: unknown variant "${v}"`);

function fail(msg: string): never {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(2);
}
const log = (s: string) => process.stderr.write(s + "\n");

// ---------------------------------------------------------------- child processes

const children = new Set<Subprocess>();

async function stopChild(p: Subprocess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return void children.delete(p);
  p.kill("SIGTERM");
  const done = await Promise.race([p.exited.then(() => true), sleep(5000).then(() => false)]);
  if (!done) {
    log(`bench: child ${p.pid} ignored SIGTERM for 5 s, killing it`);
    p.kill("SIGKILL");
    await p.exited;
  }
  children.delete(p);
}

function killAll(): void {
  for (const p of children) if (p.exitCode === null) p.kill("SIGKILL");
}

// A stuck bench must not hang the machine: hard stop after this long.
const WATCHDOG_MS = (QUICK ? 5 : 30) * 60_000;
setTimeout(() => {
  log(`bench: watchdog: still running after ${WATCHDOG_MS / 60000} min, giving up`);
  killAll();
  process.exit(3);
}, WATCHDOG_MS).unref();
process.on("SIGINT", () => {
  killAll();
  process.exit(130);
});

interface Target {
  proc: Subprocess<"pipe", "pipe", "inherit">;
  echo: number;
  download: number;
}

async function startTarget(): Promise<Target> {
  const proc = Bun.spawn([BUN, join(ROOT, "scripts/bench/target.ts")], { cwd: ROOT, stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  children.add(proc);
  const line = await new Lines(proc.stdout).next(10_000, "the bench target's ports");
  const { echo, download } = JSON.parse(line);
  return { proc, echo, download };
}

interface Server {
  proc: Subprocess<"ignore", "inherit", "inherit">;
  url: string;
  /** The server process: with workers, the supervisor (its tree holds the workers). */
  pid: number;
  workers: number;
}

/** `workers` > 1: `--workers N`, a supervisor and N workers; ready once every worker listens. */
async function startServer(profileName: string | undefined, workers: number, build: Build): Promise<Server> {
  const port = freePort();
  const prof = PROFILE_DIR && profileName ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${profileName}`] : [];
  const cmd = [BUN, ...prof, "src/cli.ts", "--no-policy", "--host", "127.0.0.1", "--port", String(port), "--log-level", "error"];
  if (workers > 1) cmd.push("--workers", String(workers));
  const proc = Bun.spawn(cmd, { cwd: build.root, env: { ...process.env, ...build.env }, stdin: "ignore", stdout: "inherit", stderr: "inherit" });
  children.add(proc);
  const deadline = performance.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`wasmnet server exited with ${proc.exitCode} during startup (${cmd.join(" ")})`);
    try {
      if (workers === 1) {
        const r = await fetch(`http://127.0.0.1:${port}/healthz`);
        if (r.status === 200) break;
      } else {
        // Whichever worker answers, wasmnet_workers is the supervisor's count of listening workers.
        const m = /^wasmnet_workers (\d+)$/m.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
        if (m && Number(m[1]) === workers) break;
      }
    } catch {}
    if (performance.now() > deadline) throw new Error(`wasmnet server not ready after 15 s (${cmd.join(" ")})`);
    await sleep(50);
  }
  return { proc, url: `ws://127.0.0.1:${port}/`, pid: proc.pid, workers };
}

// ---------------------------------------------------------------- CPU accounting

interface CpuSnap {
  client: number;
  target: number;
  /** The server's process tree (supervisor and workers), or null when no server took part. */
  server: number | null;
  /** Every other process on the machine: machine busy time minus the three above. */
  others: number;
  /** Machine busy time over its capacity (all cores) for the interval, 0..1 (deltas only). */
  busy: number;
  /** Per worker process (deltas of a server with workers; the supervisor is left out). */
  workers?: number[];
  /** Minor page faults of the server's processes. */
  serverFaults: number | null;
}
interface RawSnap {
  client: number;
  target: number;
  server: TreeCpu | null;
  machine: MachineCpu;
}
function cpuSnap(target: Target, server: Server | null): RawSnap {
  const u = process.cpuUsage();
  return { client: (u.user + u.system) / 1000, target: cpuMs(target.proc.pid), server: server ? treeCpu(server.pid) : null, machine: machineCpu() };
}
function cpuDelta(a: RawSnap, b: RawSnap): CpuSnap {
  const client = b.client - a.client;
  const target = b.target - a.target;
  const server = a.server === null || b.server === null ? null : b.server.totalMs - a.server.totalMs;
  const busyMs = b.machine.busyMs - a.machine.busyMs;
  const out: CpuSnap = {
    client,
    target,
    server,
    others: Math.max(0, busyMs - client - target - (server ?? 0)),
    busy: busyMs / Math.max(1, b.machine.totalMs - a.machine.totalMs),
    serverFaults: a.server === null || b.server === null ? null : b.server.minorFaults - a.server.minorFaults,
  };
  if (a.server && b.server && b.server.perPid.size > 1) {
    const root = [...b.server.perPid.keys()][0];
    out.workers = [...b.server.perPid].filter(([pid]) => pid !== root).map(([pid, ms]) => ms - (a.server!.perPid.get(pid) ?? 0));
  }
  return out;
}

interface RunResult {
  mibps: number;
  secs: number;
  cpu: CpuSnap;
  frames?: FrameStats;
  /** --syscalls: the server's system calls and faults during the run. */
  syscalls?: Counts | null;
}

let perfOk: boolean | null = null;
/** --syscalls: count the server's system calls during a timed run (not the hashed one). */
async function startCounting(srv: Server, verify: boolean): Promise<{ stop: () => Promise<Counts | null> } | null> {
  if (!SYSCALLS || verify) return null;
  perfOk ??= await perfAvailable(log);
  if (!perfOk) return null;
  return countSyscalls(srv.pid, join(tmpdir(), `wasmnet-bench-perf-${process.pid}.txt`));
}

async function directEcho(t: Target, streams: number, total: number, verify: boolean): Promise<RunResult> {
  const per = total / streams;
  const flows = Array.from({ length: streams }, () => new EchoFlow(per, INFLIGHT, verify, UP_CHUNK));
  const socks = await Promise.all(
    flows.map((f) =>
      directConnect(t.echo, {
        onData: (d) => f.data(d),
        onDrain: () => f.pump(),
        onClose: (why) => f.fail(`direct echo connection ${why} at ${f.describe()}`),
      }),
    ),
  );
  flows.forEach((f, i) => (f.write = (_, c) => directWrite(socks[i]!, c)));
  const c0 = cpuSnap(t, null);
  const t0 = performance.now();
  for (const f of flows) f.pump();
  await withTimeout(Promise.all(flows.map((f) => f.done)), timeoutFor(total), () => `direct echo x${streams} stalled: ${flows.map((f) => f.describe()).join("; ")}`);
  const secs = (performance.now() - t0) / 1000;
  const cpu = cpuDelta(c0, cpuSnap(t, null));
  for (const s of socks) {
    s.data.onClose = () => {};
    s.end();
  }
  return { mibps: total / MIB / secs, secs, cpu };
}

async function directDownload(t: Target, total: number, verify: boolean): Promise<RunResult> {
  const f = new DownloadFlow(total, verify);
  const s = await directConnect(t.download, {
    onData: (d) => f.data(d),
    onDrain: () => {},
    onClose: (why) => f.fail(`direct download connection ${why} at ${f.recv}/${total}`),
  });
  const c0 = cpuSnap(t, null);
  const t0 = performance.now();
  directWrite(s, new TextEncoder().encode(`${total}\n`));
  await withTimeout(f.done, timeoutFor(total), () => `direct download stalled at ${f.recv}/${total} bytes`);
  const secs = (performance.now() - t0) / 1000;
  const cpu = cpuDelta(c0, cpuSnap(t, null));
  s.data.onClose = () => {};
  s.end();
  return { mibps: total / MIB / secs, secs, cpu };
}

// ---------------------------------------------------------------- wasmnet

/** Pre-encoded `send` frames per stream id (the codec's copy is done once, not per chunk). */
const frameCache = new Map<number, Uint8Array[]>();
function sendFrame(id: number, chunkIndex: number): Uint8Array {
  let fs = frameCache.get(id);
  if (!fs) {
    fs = Array.from({ length: POOL_BYTES / UP_CHUNK }, (_, k) => encodeBinaryRequest({ op: "send", id, data: chunkAt(k, UP_CHUNK) }));
    frameCache.set(id, fs);
  }
  return fs[chunkIndex % fs.length]!;
}

/** Connects an echo flow to stream `id` of a session: credit-paced with a `window`, else paced by the flow. */
function wireEcho(ses: WnSession, id: number, f: EchoFlow, window: number | null): void {
  let credit = window ?? 0;
  if (window !== null) {
    f.gate = () => credit >= UP_CHUNK;
    f.write = (k) => {
      credit -= UP_CHUNK;
      ses.sendFrame(sendFrame(id, k));
    };
  } else f.write = (k) => ses.sendFrame(sendFrame(id, k));
  ses.sinks.set(id, {
    data: (d) => f.data(d),
    credit: (b) => {
      credit += b;
      if (window !== null && credit > window) f.fail(`server credited more than the window: ${credit} > ${window}`);
      f.pump();
    },
    other: (ev) => f.fail(streamFailure(ev, `wasmnet echo id ${id} at ${f.describe()}`)),
  });
}

function streamFailure(ev: Event, what: string): string {
  return `${what}: server sent ${describe(ev)}`;
}

/** The same 1-stream echo over Wisp (CONTINUE-paced), through the same server and target. */
async function wispEchoRun(t: Target, srv: Server, total: number, verify: boolean): Promise<RunResult> {
  const counting = await startCounting(srv, verify);
  const c0 = cpuSnap(t, srv);
  const r = await wispEcho(srv.url, t.echo, total, { verify, chunk: UP_CHUNK });
  const cpu = cpuDelta(c0, cpuSnap(t, srv));
  return { mibps: r.mibPerSec, secs: r.secs, cpu, syscalls: await counting?.stop() };
}

async function wasmnetEcho(t: Target, srv: Server, streams: number, total: number, verify: boolean, flow: boolean): Promise<RunResult | { skipped: string }> {
  const ses = await WnSession.open(srv.url);
  try {
    let window = 0;
    if (flow) {
      const h = await ses.negotiateFlow();
      if ("unsupported" in h) return { skipped: `server does not negotiate flow control (${h.unsupported})` };
      window = h.window;
    }
    const per = total / streams;
    // Version 1 has no flow control: pace by un-echoed bytes. Version 2: the credit is the pace.
    const flows = Array.from({ length: streams }, () => new EchoFlow(per, flow ? Infinity : INFLIGHT, verify, UP_CHUNK));
    await Promise.all(flows.map((_, i) => ses.connect(i + 1, "127.0.0.1", t.echo)));
    flows.forEach((f, i) => wireEcho(ses, i + 1, f, flow ? window : null));
    ses.stats = { dataFrames: 0, dataBytes: 0, creditFrames: 0, creditBytes: 0, sentFrames: 0, sentBytes: 0 };
    const counting = await startCounting(srv, verify);
    const c0 = cpuSnap(t, srv);
    const t0 = performance.now();
    for (const f of flows) f.pump();
    await withTimeout(
      Promise.all(flows.map((f) => f.done)),
      timeoutFor(total),
      () => `wasmnet echo x${streams}${flow ? " (flow)" : ""} stalled: ${flows.map((f) => f.describe()).join("; ")}`,
    );
    const secs = (performance.now() - t0) / 1000;
    const cpu = cpuDelta(c0, cpuSnap(t, srv));
    const syscalls = await counting?.stop();
    if (ses.problems.length) throw new Error(`session problems: ${ses.problems.join(" | ")}`);
    return { mibps: total / MIB / secs, secs, cpu, frames: { ...ses.stats }, syscalls };
  } finally {
    ses.sinks.clear();
    ses.close();
  }
}

/**
 * Many sessions, one echo stream each (v2 flow, as the browser client negotiates it): what a
 * server with many clients sees, and what worker processes can spread (the kernel hands each
 * new connection to one worker; the streams of one session never leave its worker).
 */
async function wasmnetManyEcho(t: Target, srv: Server, sessions: number, total: number, verify: boolean): Promise<RunResult | { skipped: string }> {
  const all: WnSession[] = [];
  try {
    for (let i = 0; i < sessions; i++) all.push(await WnSession.open(srv.url));
    const per = total / sessions;
    const flows: EchoFlow[] = [];
    await Promise.all(
      all.map(async (ses) => {
        const h = await ses.negotiateFlow();
        if ("unsupported" in h) throw new Error(`server does not negotiate flow control (${h.unsupported})`);
        await ses.connect(1, "127.0.0.1", t.echo);
        const f = new EchoFlow(per, Infinity, verify, UP_CHUNK);
        wireEcho(ses, 1, f, h.window);
        flows.push(f);
      }),
    );
    for (const s of all) s.stats = { dataFrames: 0, dataBytes: 0, creditFrames: 0, creditBytes: 0, sentFrames: 0, sentBytes: 0 };
    const counting = await startCounting(srv, verify);
    const c0 = cpuSnap(t, srv);
    const t0 = performance.now();
    for (const f of flows) f.pump();
    await withTimeout(Promise.all(flows.map((f) => f.done)), timeoutFor(total), () => `wasmnet echo over ${sessions} sessions (${srv.workers} worker(s)) stalled: ${flows.map((f) => f.describe()).join("; ")}`);
    const secs = (performance.now() - t0) / 1000;
    const cpu = cpuDelta(c0, cpuSnap(t, srv));
    const syscalls = await counting?.stop();
    const problems = all.flatMap((s) => s.problems);
    if (problems.length) throw new Error(`session problems: ${problems.join(" | ")}`);
    const frames = all.reduce(
      (a, s) => {
        for (const k of Object.keys(a) as (keyof FrameStats)[]) a[k] += s.stats[k];
        return a;
      },
      { dataFrames: 0, dataBytes: 0, creditFrames: 0, creditBytes: 0, sentFrames: 0, sentBytes: 0 } as FrameStats,
    );
    return { mibps: total / MIB / secs, secs, cpu, frames, syscalls };
  } finally {
    for (const s of all) {
      s.sinks.clear();
      s.close();
    }
  }
}

async function wasmnetDownload(t: Target, srv: Server, total: number, verify: boolean): Promise<RunResult> {
  const ses = await WnSession.open(srv.url);
  try {
    const f = new DownloadFlow(total, verify);
    await ses.connect(1, "127.0.0.1", t.download);
    ses.sinks.set(1, { data: (d) => f.data(d), other: (ev) => f.fail(streamFailure(ev, `wasmnet download at ${f.recv}/${total}`)) });
    ses.stats = { dataFrames: 0, dataBytes: 0, creditFrames: 0, creditBytes: 0, sentFrames: 0, sentBytes: 0 };
    const counting = await startCounting(srv, verify);
    const c0 = cpuSnap(t, srv);
    const t0 = performance.now();
    ses.send({ op: "send", id: 1, data: new TextEncoder().encode(`${total}\n`) });
    await withTimeout(f.done, timeoutFor(total), () => `wasmnet download stalled at ${f.recv}/${total} bytes`);
    const secs = (performance.now() - t0) / 1000;
    const cpu = cpuDelta(c0, cpuSnap(t, srv));
    const syscalls = await counting?.stop();
    return { mibps: total / MIB / secs, secs, cpu, frames: { ...ses.stats }, syscalls };
  } finally {
    ses.sinks.clear();
    ses.close();
  }
}

/** Generous: 1 MiB/s would still finish. A stall is reported with its byte counts. */
function timeoutFor(total: number): number {
  return Math.max(30_000, (total / MIB) * 1000);
}

// ---------------------------------------------------------------- connect latency

const ONE = new Uint8Array([0x2a]);

/** Direct: Bun.connect, write 1 byte, wait for its echo. Returns ms. */
async function directConnectOnce(t: Target, i: number): Promise<number> {
  let got!: () => void;
  const echoed = new Promise<void>((r) => (got = r));
  const t0 = performance.now();
  const s = await directConnect(t.echo, { onData: () => got(), onDrain: () => {}, onClose: () => {} });
  directWrite(s, ONE);
  await withTimeout(echoed, 10_000, () => `direct connect #${i}: no echo`);
  const ms = performance.now() - t0;
  s.end();
  return ms;
}

async function closeStream(ses: WnSession, id: number): Promise<void> {
  const closed = ses.next(id);
  ses.send({ op: "close", id });
  const c = await closed;
  if (c.ev !== "closed") throw new Error(`wasmnet close id ${id}: expected closed, got ${describe(c)}`);
}

/** wasmnet, on an open session: connect → connected → send 1 byte → data. Returns ms. */
async function wasmnetConnectOnce(t: Target, ses: WnSession, id: number): Promise<number> {
  const t0 = performance.now();
  await ses.connect(id, "127.0.0.1", t.echo);
  const echoed = ses.next(id);
  ses.send({ op: "send", id, data: ONE });
  const ev = await echoed;
  if (ev.ev !== "data" || ev.data.length !== 1) throw new Error(`wasmnet connect id ${id}: expected 1 echoed byte, got ${describe(ev)}`);
  const ms = performance.now() - t0;
  await closeStream(ses, id);
  return ms;
}

/**
 * Informational: the same round trip with the 1-byte send pipelined right behind the connect
 * (the server queues it until the connection is up), which saves one client↔server round trip.
 */
async function wasmnetPipelinedOnce(t: Target, ses: WnSession, id: number): Promise<number> {
  let connected = false;
  let done!: (err?: string) => void;
  const echoed = new Promise<void>((res, rej) => (done = (err) => (err ? rej(new Error(err)) : res())));
  ses.sinks.set(id, {
    data: (d) => done(connected && d.length === 1 ? undefined : `pipelined connect id ${id}: data before connected or wrong size (${d.length})`),
    other: (ev) => (ev.ev === "connected" ? (connected = true) : done(`pipelined connect id ${id}: ${describe(ev)}`)),
  });
  const t0 = performance.now();
  ses.send({ op: "connect", id, addr: "127.0.0.1", port: t.echo });
  ses.send({ op: "send", id, data: ONE });
  await withTimeout(echoed, 10_000, () => `pipelined connect id ${id}: no echo`);
  const ms = performance.now() - t0;
  ses.sinks.delete(id);
  await closeStream(ses, id);
  return ms;
}

/** Interleaved one by one, so load changes on a shared machine hit all three alike. */
async function connectLatency(t: Target, servers: Server[], n: number, warm: number): Promise<{ d: number[]; w: number[][]; pl: number[][] }> {
  const sessions = await Promise.all(servers.map((s) => WnSession.open(s.url)));
  const d: number[] = [];
  const w: number[][] = servers.map(() => []);
  const pl: number[][] = servers.map(() => []);
  let id = 1;
  for (let i = 0; i < warm + n; i++) {
    const a = await directConnectOnce(t, i);
    const b: number[] = [];
    const c: number[] = [];
    for (const ses of sessions) {
      b.push(await wasmnetConnectOnce(t, ses, id++));
      c.push(await wasmnetPipelinedOnce(t, ses, id++));
    }
    if (i < warm) continue;
    d.push(a);
    b.forEach((x, k) => w[k]!.push(x));
    c.forEach((x, k) => pl[k]!.push(x));
  }
  for (const ses of sessions) {
    if (ses.problems.length) throw new Error(`session problems: ${ses.problems.join(" | ")}`);
    ses.close();
  }
  return { d, w, pl };
}

/**
 * One byte there and back on a stream that is already open, one at a time: the latency a small
 * message pays through the relay (an interactive protocol's keystroke), against the same round
 * trip over a direct socket. Interleaved one by one like the connects.
 */
async function roundTrips(t: Target, servers: Server[], n: number, warm: number): Promise<{ d: number[]; w: number[][] }> {
  let got: () => void = () => {};
  const direct = await directConnect(t.echo, { onData: () => got(), onDrain: () => {}, onClose: () => {} });
  const sessions = await Promise.all(servers.map((s) => WnSession.open(s.url)));
  for (const ses of sessions) {
    const h = await ses.negotiateFlow(); // as the browser client runs
    if ("unsupported" in h) throw new Error(`round trips: ${h.unsupported}`);
    await ses.connect(1, "127.0.0.1", t.echo);
    ses.sinks.set(1, { data: () => got(), other: (ev) => ses.problems.push(`round trips: ${describe(ev)}`) });
  }
  const once = async (send: () => void, what: string): Promise<number> => {
    const echoed = new Promise<void>((r) => (got = r));
    const t0 = performance.now();
    send();
    await withTimeout(echoed, 10_000, () => `${what}: no echo`);
    return performance.now() - t0;
  };
  const d: number[] = [];
  const w: number[][] = servers.map(() => []);
  for (let i = 0; i < warm + n; i++) {
    const a = await once(() => directWrite(direct, ONE), "direct round trip");
    const b: number[] = [];
    for (const ses of sessions) b.push(await once(() => ses.send({ op: "send", id: 1, data: ONE }), "wasmnet round trip"));
    if (i < warm) continue;
    d.push(a);
    b.forEach((x, k) => w[k]!.push(x));
  }
  direct.data.onClose = () => {};
  direct.end();
  for (const ses of sessions) {
    if (ses.problems.length) throw new Error(`session problems: ${ses.problems.join(" | ")}`);
    ses.close();
  }
  return { d, w };
}

// ---------------------------------------------------------------- RSS per idle stream

async function settleRss(pid: number): Promise<number> {
  await sleep(SETTLE_MS);
  return vmRssKiB(pid);
}

interface RssResult {
  /** (after − before) / n: the reported figure. */
  perKiB: number;
  before: number;
  after: number;
  /** After another n streams: (after2 − after) / n, the marginal cost without one-off heap growth. */
  after2: number;
  marginalKiB: number;
}

async function wasmnetRss(t: Target, n: number): Promise<RssResult> {
  const srv = await startServer(undefined, 1, A_BUILD);
  try {
    const ses = await WnSession.open(srv.url);
    await ses.connect(1, "127.0.0.1", t.echo); // warm the connect path once
    const closed = ses.next(1);
    ses.send({ op: "close", id: 1 });
    await closed;
    const before = await settleRss(srv.pid);
    const BATCH = 100;
    const openMore = async (first: number) => {
      for (let i = 0; i < n; i += BATCH) {
        const ids = Array.from({ length: Math.min(BATCH, n - i) }, (_, k) => first + i + k);
        await Promise.all(ids.map((id) => ses.connect(id, "127.0.0.1", t.echo)));
      }
    };
    await openMore(100_000);
    const after = await settleRss(srv.pid);
    await openMore(200_000);
    const after2 = await settleRss(srv.pid);
    if (ses.problems.length) throw new Error(`session problems: ${ses.problems.join(" | ")}`);
    ses.close();
    return { perKiB: (after - before) / n, before, after, after2, marginalKiB: (after2 - after) / n };
  } finally {
    await stopChild(srv.proc);
  }
}

async function directRss(t: Target, n: number): Promise<RssResult> {
  const proc = Bun.spawn([BUN, join(ROOT, "scripts/bench/holder.ts")], { cwd: ROOT, stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  children.add(proc);
  try {
    const lines = new Lines(proc.stdout);
    await lines.next(10_000, "holder ready");
    const cmd = async (c: string) => {
      proc.stdin.write(c + "\n");
      proc.stdin.flush();
      const r = await lines.next(60_000, `holder: ${c}`);
      if (!r.startsWith("ok")) throw new Error(`holder: ${c} → ${r}`);
    };
    await cmd(`open 1 ${t.echo}`);
    await cmd("close");
    const before = await settleRss(proc.pid);
    await cmd(`open ${n} ${t.echo}`);
    const after = await settleRss(proc.pid);
    await cmd(`open ${n} ${t.echo}`);
    const after2 = await settleRss(proc.pid);
    return { perKiB: (after - before) / n, before, after, after2, marginalKiB: (after2 - after) / n };
  } finally {
    proc.stdin.end();
    await stopChild(proc);
  }
}

// ---------------------------------------------------------------- the run

interface Row {
  key: string;
  measure: string;
  unit: string;
  direct: number | null;
  wasmnet: number | null;
  ratio: number | null;
  target: string;
  pass: boolean | null;
  samples: { direct: number[]; wasmnet: number[] };
  note?: string;
  detail?: Record<string, unknown>;
}

const rows: Row[] = [];
const notes: string[] = [];

function throughputRow(key: string, measure: string, minRatio: number, dr: RunResult[] | { skipped: string }, w: RunResult[] | { skipped: string }): Row {
  const d = Array.isArray(dr) ? dr : [];
  const dm = d.length ? median(d.map((r) => r.mibps)) : NaN;
  if (!Array.isArray(w))
    return { key, measure, unit: "MiB/s", direct: dm, wasmnet: null, ratio: null, target: `≥ ${minRatio.toFixed(2)}`, pass: null, samples: { direct: d.map((r) => r.mibps), wasmnet: [] }, note: `skipped: ${w.skipped}` };
  const wm = median(w.map((r) => r.mibps));
  const ratio = d.length ? wm / dm : null;
  const perMiB = (x: number | null, r: RunResult) => (x === null ? null : x / (r.secs * r.mibps));
  const cpu = (rs: RunResult[], k: "client" | "target" | "server" | "others" | "serverFaults") => {
    const v = rs.map((r) => perMiB(r.cpu[k], r)).filter((x): x is number => x !== null);
    return v.length ? Number(median(v).toFixed(2)) : null;
  };
  const busy = (rs: RunResult[]) => (rs.length ? Number(median(rs.map((r) => r.cpu.busy)).toFixed(2)) : null);
  const server = cpu(w, "server");
  const detail: Record<string, unknown> = {
    cpu_ms_per_mib: {
      direct: { client: cpu(d, "client"), target: cpu(d, "target") },
      wasmnet: { client: cpu(w, "client"), server, target: cpu(w, "target") },
    },
    // ms per MiB is (almost) s per GiB: 1 GiB = 1024 MiB, 1 s = 1000 ms.
    proxy_cpu_s_per_gib: server === null ? null : Number(((server * 1024) / 1000).toFixed(2)),
    // Pages of fresh memory the server touched per MiB: the allocator handing out memory it
    // had given back to the kernel (docs/benchmark.md says why this costs CPU).
    server_page_faults_per_mib: cpu(w, "serverFaults"),
    // How busy the whole machine was during the timed runs (1 = every core), and how much of it
    // went to processes outside the bench (other work on a shared machine), per MiB moved.
    machine: { busy: { direct: busy(d), wasmnet: busy(w) }, others_ms_per_mib: { direct: cpu(d, "others"), wasmnet: cpu(w, "others") } },
  };
  const counted = w.map((r) => (r.syscalls ? { c: r.syscalls, mib: r.secs * r.mibps } : null)).filter((x) => x !== null);
  if (counted.length) {
    // Per MiB echoed or downloaded, median over the timed runs.
    const keys = Object.keys(counted[0]!.c);
    detail.server_syscalls_per_mib = Object.fromEntries(keys.map((k) => [k, Number(median(counted.map((x) => (x.c[k] ?? 0) / x.mib)).toFixed(1))]));
  }
  const split = w.map((r) => r.cpu.workers).filter((x): x is number[] => !!x);
  if (split.length) {
    // Each worker's share of the workers' CPU, median over runs: how evenly the kernel spread the sessions.
    const shares = split.map((ws) => {
      const sum = ws.reduce((a, b) => a + b, 0) || 1;
      return ws.map((x) => x / sum);
    });
    detail.worker_cpu_share = shares[0]!.map((_, i) => Number(median(shares.map((s) => s[i] ?? 0)).toFixed(2)));
  }
  const fr = w[w.length - 1]!.frames;
  if (fr) {
    const mib = fr.dataBytes / MIB || 1;
    detail.frames = {
      data_frames_per_mib: Number((fr.dataFrames / mib).toFixed(1)),
      avg_data_frame_bytes: Math.round(fr.dataBytes / Math.max(1, fr.dataFrames)),
      credit_frames_per_mib: Number((fr.creditFrames / mib).toFixed(1)),
    };
    if (fr.sentBytes >= MIB) (detail.frames as Record<string, number>).sent_frames_per_mib = Number((fr.sentFrames / (fr.sentBytes / MIB)).toFixed(1));
  }
  return { key, measure, unit: "MiB/s", direct: dm, wasmnet: wm, ratio, target: `≥ ${minRatio.toFixed(2)}`, pass: ratio === null ? null : ratio >= minRatio, samples: { direct: d.map((r) => r.mibps), wasmnet: w.map((r) => r.mibps) }, detail };
}

type Runner = (verify: boolean) => Promise<RunResult | { skipped: string }>;

/** One hashed verification pass per variant, then RUNS timed passes interleaved across variants. */
async function measureThroughput(name: string, variants: Record<string, Runner>): Promise<Record<string, RunResult[] | { skipped: string }>> {
  const out: Record<string, RunResult[] | { skipped: string }> = {};
  for (const [v, run] of Object.entries(variants)) {
    if (!VARIANTS.has(v.split(/[@:]/)[0]!)) {
      out[v] = { skipped: "not selected (--variants)" };
      continue;
    }
    const r = await run(true);
    if ("skipped" in r) {
      out[v] = r;
      log(`  ${name} ${v}: skipped (${r.skipped})`);
    } else {
      out[v] = [];
      log(`  ${name} ${v}: verified (sha256 ok), ${r.mibps.toFixed(0)} MiB/s while hashing`);
    }
  }
  for (let i = 0; i < RUNS; i++) {
    for (const [v, run] of Object.entries(variants)) {
      const acc = out[v]!;
      if (!Array.isArray(acc)) continue;
      const r = (await run(false)) as RunResult;
      acc.push(r);
      log(`  ${name} ${v} run ${i + 1}/${RUNS}: ${r.mibps.toFixed(1)} MiB/s (${r.secs.toFixed(2)} s)`);
    }
  }
  return out;
}

async function main(): Promise<void> {
  const target = await startTarget();
  let server: Server | null = null;
  let serverB: Server | null = null;
  const started = performance.now();
  const loadBefore = loadAverage();
  log(`bench: ${TOTAL / MIB} MiB per throughput measure, ${RUNS} timed runs + 1 verification run each, ${UP_CHUNK / KIB} KiB per upload write, v1 in-flight ${INFLIGHT / KIB} KiB`);
  if (COMPARE) log(`bench: every wasmnet measure also runs against B = ${COMPARE.describe}, interleaved with A = ${A_BUILD.describe}`);
  try {
    server = await startServer("server", 1, A_BUILD);
    if (COMPARE) serverB = await startServer("server-b", 1, COMPARE);
    const srv = server;
    const srvB = serverB;
    /** A wasmnet variant, and the same against build B when comparing. */
    const wn = (name: string, run: (s: Server) => Runner): Record<string, Runner> => ({ [name]: run(srv), ...(srvB ? { [`${name}:B`]: run(srvB) } : {}) });
    /** The row of a variant, and its B row when comparing. */
    const pushRows = (key: string, measure: string, min: number, d: RunResult[] | { skipped: string }, r: Record<string, RunResult[] | { skipped: string }>, name: string) => {
      rows.push(throughputRow(key, measure, min, d, r[name]!));
      if (r[`${name}:B`]) rows.push(throughputRow(`${key}${B_KEY}`, `${measure} ${B_MARK}`, min, d, r[`${name}:B`]!));
    };
    expectedHash(TOTAL);
    expectedHash(TOTAL / STREAMS);

    if (ONLY.has("echo1")) {
      log("echo, 1 stream");
      const r = await measureThroughput("echo1", {
        direct: (v) => directEcho(target, 1, TOTAL, v),
        ...wn("wasmnet", (s) => (v) => wasmnetEcho(target, s, 1, TOTAL, v, false)),
        ...wn("flow", (s) => (v) => wasmnetEcho(target, s, 1, TOTAL, v, true)),
        ...wn("wisp", (s) => (v) => wispEchoRun(target, s, TOTAL, v)),
      });
      const d = r.direct!;
      pushRows("echo1", "echo, 1 stream (v1, paced)", 0.6, d, r, "wasmnet");
      pushRows("echo1_flow", "echo, 1 stream (v2 flow)", 0.6, d, r, "flow");
      pushRows("echo1_wisp", "echo, 1 stream (Wisp, /wisp/)", 0.6, d, r, "wisp");
    }
    if (ONLY.has("download")) {
      log("download, 1 stream");
      const r = await measureThroughput("download", {
        direct: (v) => directDownload(target, TOTAL, v),
        ...wn("wasmnet", (s) => (v) => wasmnetDownload(target, s, TOTAL, v)),
      });
      pushRows("download", "download, 1 stream", 0.6, r.direct!, r, "wasmnet");
    }
    if (ONLY.has("echo8")) {
      log(`echo, ${STREAMS} streams`);
      const r = await measureThroughput("echo8", {
        direct: (v) => directEcho(target, STREAMS, TOTAL, v),
        ...wn("wasmnet", (s) => (v) => wasmnetEcho(target, s, STREAMS, TOTAL, v, false)),
        ...wn("flow", (s) => (v) => wasmnetEcho(target, s, STREAMS, TOTAL, v, true)),
      });
      const d = r.direct!;
      pushRows("echo8", `echo, ${STREAMS} streams on one session (v1, paced)`, 0.5, d, r, "wasmnet");
      pushRows("echo8_flow", `echo, ${STREAMS} streams on one session (v2 flow)`, 0.5, d, r, "flow");
    }
    if (ONLY.has("sessions")) {
      // A multiple of SESSIONS chunks, so that every session echoes the same whole number of chunks.
      const total = Math.max(1, Math.round(TOTAL / (SESSIONS * UNIT))) * SESSIONS * UNIT;
      log(`echo, ${SESSIONS} sessions × 1 stream (${total / SESSIONS / KIB} KiB each), workers ${WORKERS.join(", ")}`);
      const extra: Server[] = [];
      try {
        const variants: Record<string, Runner> = { direct: (v) => directEcho(target, SESSIONS, total, v) };
        for (const n of WORKERS) {
          for (const [build, one, suffix] of [[A_BUILD, srv, ""], ...(COMPARE && srvB ? [[COMPARE, srvB, ":B"] as const] : [])] as const) {
            let s = one;
            if (n > 1) extra.push((s = await startServer(undefined, n, build)));
            variants[`flow@${n}${suffix}`] = (v) => wasmnetManyEcho(target, s, SESSIONS, total, v);
          }
        }
        const r = await measureThroughput("sessions", variants);
        for (const n of WORKERS) pushRows(`sessions_w${n}`, `echo, ${SESSIONS} sessions × 1 stream, ${n} worker${n > 1 ? "s" : ""} (v2 flow)`, 0.5, r.direct!, r, `flow@${n}`);
      } finally {
        for (const s of extra) await stopChild(s.proc);
      }
    }
    if (ONLY.has("connect")) {
      log(`connect → first echoed byte, ${CONNECTS} connects`);
      const servers = srvB ? [srv, srvB] : [srv];
      const { d, w, pl } = await connectLatency(target, servers, CONNECTS, 20);
      const dm = median(d);
      const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)]!;
      servers.forEach((_, k) => {
        const [wk, pk, tag, mark] = [w[k]!, pl[k]!, k ? B_KEY : "", k ? ` ${B_MARK}` : ""];
        const wm = median(wk);
        const pm = median(pk);
        log(`  direct median ${dm.toFixed(3)} ms (p90 ${p90(d).toFixed(3)}), wasmnet${mark} waiting median ${wm.toFixed(3)} ms (p90 ${p90(wk).toFixed(3)}), pipelined ${pm.toFixed(3)} ms (p90 ${p90(pk).toFixed(3)})`);
        rows.push({
          key: `connect${tag}`,
          measure: `connect → first echoed byte, waiting for connected, median${mark}`,
          unit: "ms",
          direct: dm,
          wasmnet: wm,
          ratio: wm / dm,
          target: "≤ 2× direct",
          pass: wm <= 2 * dm,
          samples: { direct: d, wasmnet: wk },
          detail: { p90_ms: { direct: p90(d), wasmnet: p90(wk) }, pipelined_median_ms: pm, pipelined_p90_ms: p90(pk) },
        });
        rows.push({
          key: `connect_pipelined${tag}`,
          measure: `connect → first echoed byte, send pipelined behind connect, median${mark}`,
          unit: "ms",
          direct: dm,
          wasmnet: pm,
          ratio: pm / dm,
          target: "< waiting",
          pass: pm < wm,
          samples: { direct: d, wasmnet: pk },
          detail: { p90_ms: { direct: p90(d), wasmnet: p90(pk) }, waiting_median_ms: wm },
        });
      });
    }
    if (ONLY.has("rtt")) {
      log(`round trip of 1 byte on an open stream, ${CONNECTS} times`);
      const servers = srvB ? [srv, srvB] : [srv];
      const { d, w } = await roundTrips(target, servers, CONNECTS, 20);
      const dm = median(d);
      const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)]!;
      servers.forEach((_, k) => {
        const [wk, tag, mark] = [w[k]!, k ? B_KEY : "", k ? ` ${B_MARK}` : ""];
        const wm = median(wk);
        log(`  direct median ${dm.toFixed(3)} ms (p90 ${p90(d).toFixed(3)}), wasmnet${mark} median ${wm.toFixed(3)} ms (p90 ${p90(wk).toFixed(3)})`);
        rows.push({
          key: `rtt${tag}`,
          measure: `1-byte round trip on an open stream, median${mark}`,
          unit: "ms",
          direct: dm,
          wasmnet: wm,
          ratio: wm / dm,
          target: "≤ 3× direct",
          pass: wm <= 3 * dm,
          samples: { direct: d, wasmnet: wk },
          detail: { p90_ms: { direct: p90(d), wasmnet: p90(wk) } },
        });
      });
    }
    if (serverB) await stopChild(serverB.proc);
    serverB = null;
    await stopChild(server.proc);
    server = null;
    if (PROFILE_DIR) {
      // The servers have exited, so their profiles are written.
      for (const name of ["server", "server-b"]) {
        const prof = join(PROFILE_DIR, `${name}.cpuprofile`);
        if (!existsSync(prof)) continue;
        summarizeProfile(prof, join(PROFILE_DIR, `${name}-samples.md`), ROOT);
        log(`bench: profile of ${name}: ${join(PROFILE_DIR, `${name}-samples.md`)} (by samples), ${join(PROFILE_DIR, `${name}.md`)} (Bun's)`);
      }
    }

    if (ONLY.has("rss")) {
      log(`RSS per idle open stream, ${IDLE_STREAMS} streams (fresh child per run)`);
      const d: number[] = [];
      const w: number[] = [];
      const raw: { direct: RssResult; wasmnet: RssResult }[] = [];
      for (let i = 0; i < RUNS; i++) {
        const dr = await directRss(target, IDLE_STREAMS);
        const wr = await wasmnetRss(target, IDLE_STREAMS);
        d.push(dr.perKiB);
        w.push(wr.perKiB);
        raw.push({ direct: dr, wasmnet: wr });
        log(
          `  run ${i + 1}/${RUNS}: direct ${dr.perKiB.toFixed(2)} KiB/socket (${dr.before}→${dr.after}→${dr.after2} KiB), ` +
            `wasmnet ${wr.perKiB.toFixed(2)} KiB/stream (${wr.before}→${wr.after}→${wr.after2} KiB)`,
        );
      }
      const dm = median(d);
      const wm = median(w);
      rows.push({
        key: "rss",
        measure: "RSS per idle open stream",
        unit: "KiB",
        direct: dm,
        wasmnet: wm,
        ratio: dm > 0 ? wm / dm : null,
        target: "≤ 4 KiB (absolute)",
        pass: wm <= 4,
        samples: { direct: d, wasmnet: w },
        detail: { marginal_kib: { direct: median(raw.map((r) => r.direct.marginalKiB)), wasmnet: median(raw.map((r) => r.wasmnet.marginalKiB)) }, runs: raw },
      });
    }
  } finally {
    if (server) await stopChild(server.proc);
    if (serverB) await stopChild(serverB.proc);
    target.proc.stdin.end();
    await stopChild(target.proc);
  }

  const secs = (performance.now() - started) / 1000;
  const machine = { cpus: cpuCount(), load_before: loadBefore, load_after: loadAverage() };
  const scaling = workersSummary();
  const scalingB = COMPARE ? workersSummary(true) : null;
  const compared = compareSummary();
  if (JSON_OUT) {
    const json = {
      bun: Bun.version,
      quick: QUICK,
      bytes_per_measure: TOTAL,
      upload_chunk_bytes: UP_CHUNK,
      runs: RUNS,
      v1_inflight_bytes: INFLIGHT,
      streams: STREAMS,
      sessions: SESSIONS,
      connects: CONNECTS,
      idle_streams: IDLE_STREAMS,
      seconds: Number(secs.toFixed(1)),
      machine,
      rows,
      workers: scaling,
      ...(scalingB ? { workers_b: scalingB } : {}),
      ...(compared ? { compare: compared } : {}),
      notes,
    };
    process.stdout.write(JSON.stringify(json, null, 2) + "\n");
    return;
  }
  const fmt = (v: number | null, unit: string) => (v === null || Number.isNaN(v) ? "—" : unit === "MiB/s" ? `${v.toFixed(0)} MiB/s` : unit === "ms" ? `${v.toFixed(3)} ms` : `${v.toFixed(2)} KiB`);
  const lines = [
    `wasmnet bench — Bun ${Bun.version}, ${TOTAL / MIB} MiB per throughput measure, ${UP_CHUNK / KIB} KiB per upload write, median of ${RUNS} (+1 hashed verification run), ${secs.toFixed(0)} s total`,
    `machine: ${machine.cpus} CPUs, load average ${machine.load_before.join(" ")} before, ${machine.load_after.join(" ")} after`,
    "",
    "| measure | direct | wasmnet | ratio | target | ok |",
    "|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const ratio = r.ratio === null ? "—" : `${r.ratio.toFixed(2)}${r.unit === "ms" ? "×" : ""}`;
    const ok = r.pass === null ? "skip" : r.pass ? "yes" : "NO";
    lines.push(`| ${r.measure} | ${fmt(r.direct, r.unit)} | ${r.note ? r.note : fmt(r.wasmnet, r.unit)} | ${ratio} | ${r.target} | ${ok} |`);
  }
  lines.push("");
  lines.push("samples (timed runs):");
  for (const r of rows) {
    const f = (xs: number[]) => xs.map((x) => x.toFixed(r.unit === "ms" ? 3 : r.unit === "KiB" ? 2 : 0)).join(", ");
    if (r.key === "rss") {
      const m = r.detail!.marginal_kib as { direct: number; wasmnet: number };
      lines.push(`  rss: first ${IDLE_STREAMS} direct [${f(r.samples.direct)}] wasmnet [${f(r.samples.wasmnet)}] KiB; next ${IDLE_STREAMS} (marginal) direct ${m.direct.toFixed(2)}, wasmnet ${m.wasmnet.toFixed(2)} KiB`);
    } else if (r.unit === "ms") {
      const p = r.detail!.p90_ms as { direct: number; wasmnet: number };
      lines.push(`  ${r.key}: p90 direct ${p.direct.toFixed(3)} ms, wasmnet ${p.wasmnet.toFixed(3)} ms`);
    }
    else lines.push(`  ${r.key}: direct [${f(r.samples.direct)}]  wasmnet [${f(r.samples.wasmnet)}]`);
    if (r.detail?.cpu_ms_per_mib) lines.push(`    cpu ms/MiB ${JSON.stringify(r.detail.cpu_ms_per_mib)}, proxy ${r.detail.proxy_cpu_s_per_gib} s/GiB, server page faults ${r.detail.server_page_faults_per_mib}/MiB`);
    if (r.detail?.machine) lines.push(`    machine ${JSON.stringify(r.detail.machine)}`);
    if (r.detail?.server_syscalls_per_mib) lines.push(`    server syscalls per MiB ${JSON.stringify(r.detail.server_syscalls_per_mib)}`);
    if (r.detail?.worker_cpu_share) lines.push(`    worker CPU shares ${JSON.stringify(r.detail.worker_cpu_share)}`);
    if (r.detail?.frames) lines.push(`    frames ${JSON.stringify(r.detail.frames)}`);
  }
  const num = (x: number | null | undefined, digits: number) => (x === null || x === undefined || Number.isNaN(x) ? "—" : x.toFixed(digits));
  for (const [list, mark] of [[scaling, ""], [scalingB ?? [], ` ${B_MARK}`]] as const) {
    if (!list.length) continue;
    lines.push("");
    lines.push(`echo over ${SESSIONS} sessions (1 stream each) by worker count, medians${mark}:`);
    lines.push("");
    lines.push("| workers | MiB/s | ÷ direct | ÷ 1st row | proxy CPU s/GiB | client ms/MiB | target ms/MiB | machine busy |");
    lines.push("|---|---|---|---|---|---|---|---|");
    for (const w of list)
      lines.push(`| ${w.workers} | ${w.mibps.toFixed(0)} | ${num(w.vs_direct, 2)} | ${num(w.vs_first, 2)} | ${num(w.proxy_cpu_s_per_gib, 2)} | ${num(w.client_ms_per_mib, 2)} | ${num(w.target_ms_per_mib, 2)} | ${w.machine_busy === null ? "—" : `${Math.round(w.machine_busy * 100)}%`} |`);
  }
  if (compared) {
    lines.push("");
    lines.push(`A/B, interleaved in this run: A = ${compared.a}`);
    lines.push(`                              B = ${compared.b}`);
    lines.push("");
    lines.push("| measure | A | B | B ÷ A | A ÷ direct | B ÷ direct | proxy CPU s/GiB A | B |");
    lines.push("|---|---|---|---|---|---|---|---|");
    for (const c of compared.rows)
      lines.push(`| ${c.measure} | ${fmt(c.a, c.unit)} | ${fmt(c.b, c.unit)} | ${c.b_over_a.toFixed(2)} | ${num(c.a_vs_direct, 2)} | ${num(c.b_vs_direct, 2)} | ${num(c.a_proxy_cpu_s_per_gib, 2)} | ${num(c.b_proxy_cpu_s_per_gib, 2)} |`);
  }
  lines.push(`v1 uploads paced at ≤ ${INFLIGHT / KIB} KiB un-echoed per stream (direct uses the same pacing); v2 flow rows are paced by credit only.`);
  for (const n of notes) lines.push(n);
  process.stdout.write(lines.join("\n") + "\n");
}

/** Build B against A, row by row: B's value over A's, and the proxy CPU per GiB of each. */
function compareSummary() {
  if (!COMPARE) return null;
  const out = [];
  for (const b of rows.filter((r) => r.key.endsWith(B_KEY))) {
    const a = rows.find((r) => r.key === b.key.slice(0, -B_KEY.length));
    if (!a || a.wasmnet === null || b.wasmnet === null) continue;
    const cpu = (r: Row) => (r.detail?.proxy_cpu_s_per_gib as number | null | undefined) ?? null;
    out.push({ key: a.key, measure: a.measure, unit: a.unit, a: a.wasmnet, b: b.wasmnet, b_over_a: b.wasmnet / a.wasmnet, a_vs_direct: a.ratio, b_vs_direct: b.ratio, a_proxy_cpu_s_per_gib: cpu(a), b_proxy_cpu_s_per_gib: cpu(b) });
  }
  return { a: A_BUILD.describe, b: COMPARE.describe, rows: out };
}

/** The many-session rows side by side: throughput against direct and against the first worker count. */
function workersSummary(b = false) {
  const rs = rows.filter((r) => r.key.startsWith("sessions_w") && r.key.endsWith(B_KEY) === b && r.wasmnet !== null);
  const first = rs[0]?.wasmnet ?? NaN;
  return rs.map((r) => {
    const cpu = r.detail!.cpu_ms_per_mib as { wasmnet: { client: number | null; target: number | null } };
    const m = r.detail!.machine as { busy: { wasmnet: number | null } };
    return {
      workers: parseInt(r.key.slice("sessions_w".length), 10),
      mibps: r.wasmnet!,
      vs_direct: r.ratio ?? NaN,
      vs_first: r.wasmnet! / first,
      proxy_cpu_s_per_gib: r.detail!.proxy_cpu_s_per_gib as number | null,
      client_ms_per_mib: cpu.wasmnet.client,
      target_ms_per_mib: cpu.wasmnet.target,
      machine_busy: m.busy.wasmnet,
      worker_cpu_share: (r.detail!.worker_cpu_share as number[] | undefined) ?? null,
    };
  });
}

try {
  await main();
  process.exit(0);
} catch (e) {
  log(`bench: FAILED: ${(e as Error).stack ?? e}`);
  killAll();
  process.exit(1);
}
