// Who this process is in a server with worker processes, and how a supervisor starts a worker:
// the same program run again (the compiled binary, or bun and the script), with the same
// arguments, told by one environment variable which slot it fills and on which port.
import { availableParallelism } from "node:os";

/** Set by the supervisor in each worker's environment. */
export const WORKER_ENV = "WASMNET_WORKER";

export interface WorkerRole {
  /** 0 … count-1; a restarted worker takes its predecessor's slot. */
  slot: number;
  count: number;
  /** The port every worker binds (with reusePort): the supervisor chose it. */
  port: number;
}

export function encodeRole(r: WorkerRole): string {
  return JSON.stringify(r);
}

/**
 * This process's role, or null when it is not a worker. Both the variable and an IPC channel
 * are needed: the variable alone (set by hand, or inherited by something a worker ran) must not
 * turn a plain `wasmnet` into a worker with no one to answer to.
 */
export function workerRole(env: Record<string, string | undefined> = process.env, hasChannel = typeof process.send === "function"): WorkerRole | null {
  const raw = env[WORKER_ENV];
  if (raw === undefined || !hasChannel) return null;
  let r: unknown;
  try {
    r = JSON.parse(raw);
  } catch {
    return null;
  }
  const { slot, count, port } = (r ?? {}) as Partial<WorkerRole>;
  const int = (n: unknown, lo: number, hi: number): n is number => typeof n === "number" && Number.isInteger(n) && n >= lo && n <= hi;
  if (!int(count, 1, 1024) || !int(slot, 0, count - 1) || !int(port, 1, 65535)) return null;
  return { slot, count, port };
}

/** How many workers `--workers` / `[server] workers` asks for: "auto" is the CPU count. */
export function workerCount(setting: number | "auto", cpus: number = availableParallelism()): number {
  return setting === "auto" ? Math.max(1, cpus) : setting;
}

/**
 * The command line that runs this program again with `args`. A compiled binary is its own
 * executable (argv[1] is a path inside the binary, not a file); otherwise it is bun, bun's own
 * flags (e.g. --smol), and the script (which is how `bunx wasmnet` and the npm bin run too).
 */
export function selfCommand(
  args: string[],
  p: { execPath: string; execArgv: string[]; argv: string[]; standalone: boolean } = {
    execPath: process.execPath,
    execArgv: process.execArgv,
    argv: process.argv,
    standalone: Bun.isStandaloneExecutable,
  },
): string[] {
  if (p.standalone) return [p.execPath, ...args];
  return [p.execPath, ...p.execArgv, p.argv[1]!, ...args];
}
