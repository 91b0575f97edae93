// A real redis-server on a free loopback port, no persistence, for the cluster-limit tests.
// Without redis-server those tests are skipped with a loud warning, except under CI, where a
// missing redis-server is a failure (CI installs it).
import type { Subprocess } from "bun";
import { freePort } from "./targets.ts";

export const REDIS_SERVER = Bun.which("redis-server") ?? "";
export const haveRedis = REDIS_SERVER !== "";

export function warnNoRedis(file: string): void {
  const line = "!".repeat(78);
  console.warn(
    `\n${line}\n${file}: redis-server is missing, so the Redis tests are SKIPPED (not passed).\n` +
      `Install it with: apt-get install -y redis-server\n${line}\n`,
  );
}

export interface RedisProcess {
  port: number;
  url: string;
  /** kill -9, as a crash would, and wait for the exit. */
  kill(): Promise<void>;
  /** SIGSTOP: the port stays open but nothing answers (a hung or partitioned server). */
  pause(): void;
  resume(): void;
}

/** Starts redis-server on 127.0.0.1 (a free port unless given) and waits for "Ready to accept". */
export async function startRedis(port?: number): Promise<RedisProcess> {
  for (let attempt = 0; ; attempt++) {
    const p = port ?? freePort();
    const proc = Bun.spawn([REDIS_SERVER, "--port", String(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const out = await readUntilReady(proc);
    if (out.ready) {
      // Keep draining stdout so redis never blocks on a full pipe.
      void (async () => {
        for await (const _ of proc.stdout) {
        }
      })().catch(() => {});
      return {
        port: p,
        url: `redis://127.0.0.1:${p}`,
        kill: async () => {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
          await proc.exited;
        },
        pause: () => proc.kill("SIGSTOP"),
        resume: () => proc.kill("SIGCONT"),
      };
    }
    proc.kill("SIGKILL");
    await proc.exited;
    // A free port can be taken between freePort() and redis's bind: try another one.
    if (port !== undefined || attempt >= 3) throw new Error(`redis-server did not start on port ${p}:\n${out.text}`);
  }
}

async function readUntilReady(proc: Subprocess<"ignore", "pipe", "pipe">): Promise<{ ready: boolean; text: string }> {
  const decoder = new TextDecoder();
  let text = "";
  const reader = proc.stdout.getReader();
  const deadline = setTimeout(() => proc.kill("SIGKILL"), 10_000);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return { ready: false, text };
      text += decoder.decode(value);
      if (text.includes("Ready to accept connections")) return { ready: true, text };
    }
  } finally {
    clearTimeout(deadline);
    reader.releaseLock();
  }
}
