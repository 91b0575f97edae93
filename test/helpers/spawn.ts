// Run the wasmnet CLI (or the compiled binary) as a child process, so tests can measure its
// memory on its own and exercise signals and exit codes.
import type { Subprocess } from "bun";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "./wait.ts";

const root = join(import.meta.dir, "../..");

export interface Child {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  port: number;
  url: string;
  wsUrl: string;
  /** Everything the child wrote to stderr so far (JSON log lines). */
  logs: () => string;
  rssBytes: () => number;
  stop: (signal?: NodeJS.Signals) => Promise<number>;
}

/** Starts `bun src/cli.ts ARGS` (or `cmd`) on 127.0.0.1, port 0, and waits for its "listening" line. */
export async function spawnServer(args: string[], cmd: string[] = [process.execPath, join(root, "src/cli.ts")], env?: Record<string, string>): Promise<Child> {
  const proc = Bun.spawn([...cmd, "--host", "127.0.0.1", "--port", "0", ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: env ?? { ...process.env },
  });
  let err = "";
  const decoder = new TextDecoder();
  let port = 0;
  const reader = (async () => {
    for await (const chunk of proc.stderr) {
      err += decoder.decode(chunk);
      const m = /"msg":"listening"[^\n]*"port":(\d+)/.exec(err);
      if (m && !port) port = Number(m[1]);
    }
  })();
  await waitFor(() => port !== 0, {
    what: 'the server\'s "listening" log line',
    timeoutMs: 15_000,
    intervalMs: 10,
    failIf: () => proc.exitCode !== null && `the server exited with ${proc.exitCode}`,
    detail: () => `stderr:\n${err}`,
  });
  return {
    proc,
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/`,
    logs: () => err,
    rssBytes: () => {
      const status = readFileSync(`/proc/${proc.pid}/status`, "utf8");
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
    },
    stop: async (signal = "SIGTERM") => {
      if (proc.exitCode === null) proc.kill(signal);
      const code = await proc.exited;
      await reader.catch(() => {});
      return code;
    },
  };
}
