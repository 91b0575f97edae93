// CPU accounting for the bench, from /proc (Linux): the CPU time of a process and of its whole
// tree (a supervisor and its workers), and how busy the machine was, so that a run on a shared
// machine says how much of the CPU went to other work meanwhile.
import { readdirSync, readFileSync } from "node:fs";

/** Linux reports process times in clock ticks; USER_HZ is 100 on every mainstream kernel. */
const CLK_TCK = 100;

function statFields(pid: number): string[] | null {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null; // exited meanwhile
  }
  // After "pid (comm) ": state is field 3; comm may hold spaces and parentheses.
  return s.slice(s.lastIndexOf(")") + 2).split(" ");
}

/** utime+stime of one process in ms (0 if it is gone). */
export function cpuMs(pid: number): number {
  const f = statFields(pid);
  if (!f) return 0;
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

/** utime+stime of children the process has reaped (cutime+cstime), in ms. */
function reapedChildrenMs(pid: number): number {
  const f = statFields(pid);
  if (!f) return 0;
  return ((Number(f[13]) + Number(f[14])) * 1000) / CLK_TCK;
}

/** The live children of a process (every thread's list). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").split(" ")) if (c) out.push(Number(c));
    } catch {}
  }
  return out;
}

/** A process and every live descendant. */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...childrenOf(out[i]!));
  return out;
}

export interface TreeCpu {
  /** Every process of the tree, plus what its processes reaped (a worker that died meanwhile). */
  totalMs: number;
  /** Minor page faults of the live processes: each is a page of fresh memory touched (allocator churn). */
  minorFaults: number;
  /** Per live process, root first. */
  perPid: Map<number, number>;
}

/** CPU of a process tree: a live worker is not in its parent's cutime until reaped, so no double count. */
export function treeCpu(pid: number): TreeCpu {
  const perPid = new Map<number, number>();
  let totalMs = 0;
  let minorFaults = 0;
  for (const p of processTree(pid)) {
    const ms = cpuMs(p);
    perPid.set(p, ms);
    totalMs += ms + reapedChildrenMs(p);
    minorFaults += Number(statFields(p)?.[7] ?? 0); // field 10, minflt
  }
  return { totalMs, minorFaults, perPid };
}

/** Machine-wide CPU time (all cores) from /proc/stat, in ms: busy and total. */
export interface MachineCpu {
  busyMs: number;
  totalMs: number;
}

export function machineCpu(): MachineCpu {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!; // "cpu  user nice system idle iowait irq softirq steal ..."
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const idle = v[3]! + v[4]!;
  const total = v.reduce((a, b) => a + b, 0);
  return { busyMs: ((total - idle) * 1000) / CLK_TCK, totalMs: (total * 1000) / CLK_TCK };
}

/** The 1, 5 and 15 minute load averages. */
export function loadAverage(): [number, number, number] {
  const [a, b, c] = readFileSync("/proc/loadavg", "utf8").split(" ").map(Number);
  return [a!, b!, c!];
}

export function cpuCount(): number {
  return require("node:os").availableParallelism?.() ?? require("node:os").cpus().length;
}
