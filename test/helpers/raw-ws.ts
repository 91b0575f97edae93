// A WebSocket client on a raw TCP socket, for what browser-style clients cannot do: stop
// reading entirely (so the server's outgoing buffer fills) while still sending.
import type { Socket } from "bun";

export interface RawWs {
  sendBinary(payload: Uint8Array): void;
  pause(): void;
  resume(): void;
  received: () => number;
  close(): void;
}

export async function rawWebSocket(port: number, path = "/"): Promise<RawWs> {
  let handshake = "";
  let upgraded = false;
  let received = 0;
  let ready!: () => void;
  const opened = new Promise<void>((r) => (ready = r));
  const socket: Socket<undefined> = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(_s, d) {
        if (!upgraded) {
          handshake += new TextDecoder().decode(d);
          if (handshake.includes("\r\n\r\n")) {
            upgraded = true;
            ready();
          }
          return;
        }
        received += d.length;
      },
      error() {},
    },
  });
  const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await opened;
  if (!handshake.startsWith("HTTP/1.1 101")) throw new Error(`upgrade failed: ${handshake.split("\r\n")[0]}`);
  return {
    sendBinary(payload) {
      // Client frames must be masked; a zero mask keeps the payload as-is.
      const n = payload.length;
      const head = n < 126 ? [0x82, 0x80 | n] : n < 65536 ? [0x82, 0x80 | 126, n >> 8, n & 0xff] : [0x82, 0x80 | 127, 0, 0, 0, 0, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
      const frame = new Uint8Array(head.length + 4 + n);
      frame.set(head);
      frame.set(payload, head.length + 4);
      const w = socket.write(frame);
      if (w !== frame.length) throw new Error("raw websocket write was partial; keep test frames small");
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    received: () => received,
    close: () => socket.terminate(),
  };
}
