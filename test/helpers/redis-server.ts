// A real redis-server on a free loopback port, no persistence, for the cluster-limit tests.
// Whether redis-server is here (skip, or fail where CI requires it) is decided by
// helpers/components.ts: `needing("redis-server")`; start it only when that says available.
import type { Subprocess } from "bun";
import { component } from "./components.ts";
import { freePort } from "./targets.ts";

/** The redis-server executable components.ts found (it answered --version). */
function redisServer(): string {
  const c = component("redis-server");
  if (!c.path) throw new Error(c.why);
  return c.path;
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
    const proc = Bun.spawn([redisServer(), "--port", String(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"], {
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
