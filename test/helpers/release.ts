// Helpers for the release, package and container tests: run a wasmnet executable as a child
// process (port 0, the bound port read from its "listening" log line), a loopback echo target,
// a relay smoke test over a real WebSocket, and a working directory full of hostile Bun
// configuration that a deployed binary must ignore.
import type { Subprocess } from "bun";
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const REPO = join(import.meta.dir, "../..");
export const BUN = join(REPO, "node_modules/.bin/bun");

/** Print a loud, unmissable line that some tests did not run (a skip is never a pass). */
export function warnSkipped(file: string, why: string): void {
  const bar = "!".repeat(78);
  console.warn(`\n${bar}\n${file}: SKIPPED (not passed): ${why}\n${bar}\n`);
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `wasmnet-${prefix}-`));
}

/** A TCP echo server on 127.0.0.1 (small payloads only: smoke tests). */
export function echoTarget(): { port: number; stop(): void } {
  const l = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(s, d) {
        s.write(d);
      },
      error() {},
    },
  });
  return { port: l.port, stop: () => l.stop(true) };
}

export interface Running {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  port: number;
  /** Everything the process wrote to stderr so far (the JSON log). */
  log(): string;
  stop(): Promise<number>;
}

/**
 * Spawns `cmd` (which must end with wasmnet's own arguments and listen on port 0) and waits for
 * its `"msg":"listening"` log line. Rejects with the output if the process exits first.
 */
export async function startWasmnet(cmd: string[], opts: { cwd: string; env?: Record<string, string>; timeoutMs?: number }): Promise<Running> {
  const proc = Bun.spawn(cmd, { cwd: opts.cwd, env: opts.env ?? {}, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let err = "";
  let out = "";
  void (async () => {
    for await (const c of proc.stdout) out += new TextDecoder().decode(c);
  })();
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`no "listening" line within ${opts.timeoutMs ?? 20000} ms from ${cmd.join(" ")}\nstderr:\n${err}\nstdout:\n${out}`));
    }, opts.timeoutMs ?? 20000);
    void (async () => {
      const dec = new TextDecoder();
      for await (const c of proc.stderr) {
        err += dec.decode(c, { stream: true });
        const m = err.match(/"msg":"listening".*?"port":(\d+)/);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      }
    })();
    void proc.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd.join(" ")} exited with ${code} before listening\nstderr:\n${err}\nstdout:\n${out}`));
    });
  });
  return {
    proc,
    port,
    log: () => err,
    async stop() {
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
      const code = await proc.exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** GET /healthz → [status, body]. */
export async function healthz(port: number): Promise<[number, string]> {
  const r = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(10000) });
  return [r.status, (await r.text()).trim()];
}

/**
 * The relay smoke test: a WebSocket to wasmnet on `port`, `connect` to addr:targetPort, `send` a
 * payload, and resolve with what comes back in `data` events once as many bytes have arrived.
 */
export async function relaySmoke(port: number, targetPort: number, opts: { addr?: string; payload?: string; timeoutMs?: number } = {}): Promise<string> {
  const payload = opts.payload ?? `wasmnet smoke ${Math.random().toString(36).slice(2)}\n`;
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  try {
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`relay smoke test timed out; events: ${JSON.stringify(events)}`)), opts.timeoutMs ?? 15000);
      const events: unknown[] = [];
      let got = "";
      ws.onopen = () => ws.send(JSON.stringify({ op: "connect", id: 1, addr: opts.addr ?? "127.0.0.1", port: targetPort }));
      ws.onerror = () => reject(new Error("websocket error"));
      ws.onclose = (c) => reject(new Error(`websocket closed (${c.code}); events: ${JSON.stringify(events)}`));
      ws.onmessage = (m) => {
        const e = JSON.parse(String(m.data));
        events.push(e);
        if (e.ev === "connected" && e.id === 1) ws.send(JSON.stringify({ op: "send", id: 1, data: Buffer.from(payload).toString("base64") }));
        else if (e.ev === "data" && e.id === 1) {
          got += Buffer.from(e.data, "base64").toString();
          if (got.length >= payload.length) {
            clearTimeout(timer);
            resolve(got);
          }
        } else if (e.ev === "error" || e.ev === "closed") {
          clearTimeout(timer);
          reject(new Error(`relay failed: ${JSON.stringify(e)}`));
        }
      };
    }).then((got) => {
      if (got !== payload) throw new Error(`echo mismatch: sent ${JSON.stringify(payload)}, got ${JSON.stringify(got)}`);
      return got;
    });
  } finally {
    ws.onclose = null;
    ws.close();
  }
}

/**
 * An otherwise empty working directory holding a hostile `.env` and `bunfig.toml`. If a binary
 * loaded them: WASMNET_LOG from .env is not a log level, so wasmnet would refuse to start; the
 * bunfig preload would write PWNED and set a global. `listing()` is what the directory must still
 * contain afterwards.
 */
export function hostileDir(): { dir: string; listing: string[] } {
  const dir = tempDir("hostile");
  writeFileSync(join(dir, ".env"), "WASMNET_LOG=dotenv-was-loaded\nNODE_TLS_REJECT_UNAUTHORIZED=0\n");
  writeFileSync(join(dir, "bunfig.toml"), 'preload = ["./pwn.js"]\n');
  writeFileSync(join(dir, "pwn.js"), 'require("fs").writeFileSync("PWNED", "bunfig.toml preload ran\\n"); globalThis.__pwned = "bunfig-preload-ran";\n');
  return { dir, listing: readdirSync(dir).sort() };
}

/** What a compiled wasmnet prints for --version: "<package.json version> (<commit>)". */
export function compiledVersionRe(): RegExp {
  const v = (require(join(REPO, "package.json")) as { version: string }).version.replace(/\./g, "\\.");
  return new RegExp(`^${v} \\((?:[0-9a-f]{7,}|unknown)\\)\\n?$`);
}
