// The default server-wide memory budget ([limits] max_memory_mb): half of what this process
// can have — the machine's memory, or the container's limit when that is lower. Half leaves
// room for what the budget does not count (the runtime, TLS state, the kernel's socket
// buffers) before the container's OOM killer ends every session at once.
import { readFileSync } from "node:fs";
import { totalmem } from "node:os";
import { join } from "node:path";

const MIB = 1024 * 1024;

/** Half of the lower of the machine's memory and the container's limit, in MiB (at least 1). */
export function memoryBudgetMb(machineBytes: number, containerLimitBytes: number | null): number {
  const available = containerLimitBytes === null ? machineBytes : Math.min(machineBytes, containerLimitBytes);
  return Math.max(1, Math.floor(available / 2 / MIB));
}

/**
 * A cgroup memory limit file's content in bytes; null for "no limit". cgroup v2 writes "max";
 * cgroup v1 writes a page-rounded 2^63 instead, which is a number larger than any machine,
 * so memoryBudgetMb's minimum takes care of it.
 */
export function parseCgroupLimit(text: string): number | null {
  const t = text.trim();
  if (!/^[0-9]+$/.test(t)) return null;
  const n = Number(t);
  return n > 0 && Number.isFinite(n) ? n : null;
}

/** The container's memory limit: cgroup v2's memory.max, else v1's memory.limit_in_bytes; null if neither says. */
export function readContainerMemoryLimit(cgroupRoot = "/sys/fs/cgroup"): number | null {
  for (const file of [join(cgroupRoot, "memory.max"), join(cgroupRoot, "memory", "memory.limit_in_bytes")]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue; // not this cgroup version, or not in a cgroup with a memory controller
    }
    return parseCgroupLimit(text);
  }
  return null;
}

let cached: number | null = null;

/** The default max_memory_mb for this process; read once (a container's limit does not change under it). */
export function defaultMaxMemoryMb(): number {
  cached ??= memoryBudgetMb(totalmem(), readContainerMemoryLimit());
  return cached;
}
