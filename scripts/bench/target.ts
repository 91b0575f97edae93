// Bench target, run as a child process: a TCP echo server and a download source on 127.0.0.1.
// Prints {"echo":PORT,"download":PORT} on stdout, then serves until stdin closes (the bench
// exits or kills it). Both honour backpressure: Bun's write() never buffers (docs/bun.md#partial-writes).
import type { Socket } from "bun";
import { pattern, POOL_BYTES } from "./common.ts";

interface EchoState {
  queue: Uint8Array[];
}

function flushEcho(s: Socket<EchoState>): void {
  const q = s.data.queue;
  while (q.length > 0) {
    const head = q[0]!;
    const n = s.write(head);
    if (n < 0) return void (q.length = 0);
    if (n < head.length) {
      q[0] = head.subarray(n);
      return;
    }
    q.shift();
  }
  s.resume();
}

const echo = Bun.listen<EchoState>({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open(s) {
      s.data = { queue: [] };
      s.setNoDelay(true);
    },
    data(s, d) {
      const q = s.data.queue;
      if (q.length > 0) return void q.push(d);
      const n = s.write(d);
      if (n >= 0 && n < d.length) {
        q.push(d.subarray(n));
        s.pause(); // stop reading until the peer takes the echo
      }
    },
    drain(s) {
      flushEcho(s);
    },
    error() {},
  },
});

interface DownState {
  req: string;
  left: number;
  off: number;
}

function pushDownload(s: Socket<DownState>): void {
  const p = pattern();
  const st = s.data;
  while (st.left > 0) {
    const len = Math.min(st.left, POOL_BYTES - st.off, 1024 * 1024);
    const n = s.write(p.subarray(st.off, st.off + len));
    if (n <= 0) return;
    st.left -= n;
    st.off = (st.off + n) % POOL_BYTES;
    if (n < len) return; // kernel full: drain continues
  }
}

/** Download source: the client writes "<bytes>\n"; we send that many pattern bytes as fast as we can. */
const download = Bun.listen<DownState>({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open(s) {
      s.data = { req: "", left: 0, off: 0 };
      s.setNoDelay(true);
    },
    data(s, d) {
      const st = s.data;
      st.req += new TextDecoder().decode(d);
      const nl = st.req.indexOf("\n");
      if (nl < 0) return;
      st.left = Number(st.req.slice(0, nl));
      st.req = "";
      pushDownload(s);
    },
    drain(s) {
      pushDownload(s);
    },
    error() {},
  },
});

process.stdout.write(JSON.stringify({ echo: echo.port, download: download.port, pid: process.pid }) + "\n");

// Exit when the bench goes away (its end of our stdin closes).
for await (const _ of Bun.stdin.stream()) {
}
echo.stop(true);
download.stop(true);
process.exit(0);
