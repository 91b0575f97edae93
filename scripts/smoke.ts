// Relay smoke test for a built server: `bun scripts/smoke.ts dist/wasmnet`.
// Starts the executable on a free loopback port with --no-policy, relays bytes through it to
// a local echo server in both framings, checks /healthz, stops it with SIGTERM. Exit 0 = pass.
import { encodeBinaryRequest, decodeBinaryEvent } from "../src/protocol/binary.ts";

export async function smoke(executable: string[], env?: Record<string, string>, cwd?: string): Promise<void> {
  const echo = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (s, d) => void s.write(d) } });
  const proc = Bun.spawn([...executable, "--no-policy", "--host", "127.0.0.1", "--port", "0"], { stderr: "pipe", stdout: "ignore", env, cwd });
  try {
    let log = "";
    let port = 0;
    const dec = new TextDecoder();
    void (async () => {
      for await (const c of proc.stderr) log += dec.decode(c);
    })();
    const deadline = Date.now() + 15_000;
    while (!port) {
      const m = /"msg":"listening"[^\n]*"port":(\d+)/.exec(log);
      if (m) port = Number(m[1]);
      else if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`server did not start:\n${log}`);
      else await Bun.sleep(10);
    }
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    if (health.status !== 200) throw new Error(`/healthz answered ${health.status}`);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    ws.binaryType = "arraybuffer";
    const got: string[] = [];
    ws.onmessage = (m) => {
      if (typeof m.data === "string") {
        const e = JSON.parse(m.data);
        got.push(e.ev === "data" ? "json:" + atob(e.data) : e.ev);
      } else {
        const e = decodeBinaryEvent(new Uint8Array(m.data));
        got.push(e.ev === "data" ? "bin:" + dec.decode(e.data) : e.ev);
      }
    };
    await new Promise((r, j) => ((ws.onopen = r), (ws.onerror = j)));
    const until = async (what: string) => {
      const end = Date.now() + 5000;
      while (!got.includes(what)) {
        if (Date.now() > end) throw new Error(`no "${what}"; got ${JSON.stringify(got)}`);
        await Bun.sleep(5);
      }
    };
    ws.send(JSON.stringify({ op: "connect", id: 1, addr: "127.0.0.1", port: echo.port }));
    await until("connected");
    ws.send(JSON.stringify({ op: "send", id: 1, data: btoa("ping") }));
    await until("json:ping");
    ws.send(encodeBinaryRequest({ op: "send", id: 1, data: new TextEncoder().encode("pong") }) as Uint8Array<ArrayBuffer>);
    await until("bin:pong");
    ws.close();
    proc.kill("SIGTERM");
    const code = await proc.exited;
    if (code !== 0) throw new Error(`exit code ${code} after SIGTERM`);
  } finally {
    if (proc.exitCode === null) proc.kill("SIGKILL");
    echo.stop(true);
  }
}

if (import.meta.main) {
  const exe = Bun.argv.slice(2);
  if (exe.length === 0) {
    console.error("usage: bun scripts/smoke.ts EXECUTABLE [ARGS…]");
    process.exit(2);
  }
  try {
    await smoke(exe);
    console.log(`smoke: ${exe.join(" ")} relayed bytes in both framings: ok`);
  } catch (e) {
    console.error(`smoke: FAILED: ${(e as Error).message}`);
    process.exit(1);
  }
}
