// The bench's --syscalls: counts the system calls and page faults of the wasmnet server's
// processes during a timed run, with `perf stat` on the kernel's tracepoints (Linux, and
// perf_event_paranoid low enough or root). Without perf the measure is left out, never faked.
import type { Subprocess } from "bun";
import { readFileSync } from "node:fs";
import { processTree } from "./proc.ts";

/** What is counted, and the name each count has in the results. */
const EVENTS: Record<string, string> = {
  "raw_syscalls:sys_enter": "total",
  "syscalls:sys_enter_sendto": "sendto",
  "syscalls:sys_enter_sendmsg": "sendmsg",
  "syscalls:sys_enter_recvfrom": "recvfrom",
  "syscalls:sys_enter_epoll_pwait2": "epoll_pwait2",
  "syscalls:sys_enter_epoll_wait": "epoll_wait",
  "syscalls:sys_enter_madvise": "madvise",
  "page-faults": "page_faults",
  "context-switches": "context_switches",
};

export type Counts = Record<string, number>;

/** False (with the reason logged) when perf cannot count syscall tracepoints here. */
export async function perfAvailable(log: (s: string) => void): Promise<boolean> {
  try {
    const p = Bun.spawn(["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "true"], { stdout: "ignore", stderr: "pipe" });
    const err = await new Response(p.stderr).text();
    if ((await p.exited) !== 0 || /not supported|<not counted>|Permission|denied/i.test(err)) {
      log(`bench: --syscalls: perf cannot count syscall tracepoints here (${err.trim().split("\n")[0] ?? "exit " + p.exitCode}); left out`);
      return false;
    }
    return true;
  } catch (e) {
    log(`bench: --syscalls: no perf (${(e as Error).message}); left out`);
    return false;
  }
}

/** Starts counting for every process of the tree under `pid`; stop() ends it and returns the counts. */
export async function countSyscalls(pid: number, file: string): Promise<{ stop: () => Promise<Counts | null> }> {
  const pids = processTree(pid).join(",");
  const proc: Subprocess = Bun.spawn(["perf", "stat", "-x", ",", "-e", Object.keys(EVENTS).join(","), "-p", pids, "-o", file], { stdout: "ignore", stderr: "ignore" });
  await Bun.sleep(100); // perf attaches to the processes before it counts
  return {
    async stop() {
      proc.kill("SIGINT");
      await proc.exited;
      let text: string;
      try {
        text = readFileSync(file, "utf8");
      } catch {
        return null;
      }
      const out: Counts = {};
      for (const line of text.split("\n")) {
        const f = line.split(",");
        const name = EVENTS[f[2] ?? ""];
        if (name && /^\d+$/.test(f[0] ?? "")) out[name] = Number(f[0]);
      }
      return Object.keys(out).length ? out : null;
    },
  };
}
