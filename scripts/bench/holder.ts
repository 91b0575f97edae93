// Direct-TCP baseline for "RSS per idle open stream", run as a child process: holds N plain
// Bun.connect sockets open so the bench can read this process's VmRSS before and after.
// stdin commands (one per line): "open N PORT" → "ok N", "close" → "ok 0". Exits at stdin EOF.
import type { Socket } from "bun";

const held: Socket<undefined>[] = [];
const handlers = { data() {}, error() {}, close() {} };

async function open(n: number, port: number): Promise<void> {
  const BATCH = 100; // keep the listener's accept backlog comfortable
  for (let i = 0; i < n; i += BATCH) {
    const k = Math.min(BATCH, n - i);
    const socks = await Promise.all(Array.from({ length: k }, () => Bun.connect({ hostname: "127.0.0.1", port, socket: handlers })));
    for (const s of socks) {
      s.setNoDelay(true); // the relay sets it on its target sockets too
      held.push(s);
    }
  }
}

process.stdout.write(`ready ${process.pid}\n`);
let buf = "";
const dec = new TextDecoder();
for await (const chunk of Bun.stdin.stream()) {
  buf += dec.decode(chunk, { stream: true });
  let nl: number;
  while ((nl = buf.indexOf("\n")) >= 0) {
    const [cmd, a, b] = buf.slice(0, nl).trim().split(/\s+/);
    buf = buf.slice(nl + 1);
    if (cmd === "open") {
      try {
        await open(Number(a), Number(b));
        process.stdout.write(`ok ${held.length}\n`);
      } catch (e) {
        process.stdout.write(`fail ${String(e)}\n`);
      }
    } else if (cmd === "close") {
      for (const s of held.splice(0)) s.end();
      process.stdout.write("ok 0\n");
    }
  }
}
process.exit(0);
