#!/usr/bin/env bun
// Wisp row for the benchmark: echo `bytes` through one Wisp (v1) stream and report MiB/s.
//
//   import { wispEcho } from "./bench/wisp.ts";
//   const { mibPerSec } = await wispEcho("ws://127.0.0.1:9000/wisp/", echoPort, 256 * 1024 * 1024);
//
// The client is a minimal packet-level one built on the project's codec (no wisp-js), sending
// 64 KiB DATA packets within the server's CONTINUE credit, so the number measures the server.
import { decodeWispPacket, encodeWispData, encodeWispPacket } from "../../src/protocol/wisp.ts";

export interface WispEchoOptions {
  /** DATA packet size (default 64 KiB, like the wasmnet echo rows). */
  chunk?: number;
  /** Echo target host as the server sees it (default 127.0.0.1). */
  targetHost?: string;
  /** Hash what comes back and compare (default true); the hashing is outside nothing, so it costs a little. */
  verify?: boolean;
  /** Most bytes queued in the client's WebSocket before it waits (default 4 MiB). */
  clientBuffer?: number;
  /** Give up after this long (default 120 s). */
  timeoutMs?: number;
}

const MIB = 1024 * 1024;

function payloadChunk(size: number): Uint8Array {
  const p = new Uint8Array(size);
  let x = 0x2545f491;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    p[i] = x & 0xff;
  }
  return p;
}

/**
 * Echo `bytes` through one Wisp stream to `targetPort` and back. `serverUrl` is the Wisp
 * endpoint (ws://host:port/wisp/); a bare server URL (path "/") gets "/wisp/" appended.
 */
export async function wispEcho(serverUrl: string, targetPort: number, bytes: number, o: WispEchoOptions = {}): Promise<{ mibPerSec: number; secs: number; bytes: number }> {
  const url = new URL(serverUrl);
  if (url.pathname === "/" || url.pathname === "") url.pathname = "/wisp/";
  const chunkSize = o.chunk ?? 64 * 1024;
  const verify = o.verify ?? true;
  const clientBuffer = o.clientBuffer ?? 4 * MIB;
  const chunk = payloadChunk(chunkSize);
  // One prebuilt DATA packet per chunk size: the payload repeats, so the frames do too.
  const fullPacket = encodeWispData(1, chunk);

  const ws = new WebSocket(url.href);
  ws.binaryType = "arraybuffer";
  let credit = 0;
  let sent = 0;
  let received = 0;
  let started = 0;
  let finish!: (secs: number) => void;
  let abort!: (e: Error) => void;
  const done = new Promise<number>((res, rej) => ((finish = res), (abort = rej)));
  const sendHash = verify ? new Bun.CryptoHasher("sha256") : null;
  const recvHash = verify ? new Bun.CryptoHasher("sha256") : null;
  let waiting = false;

  const pump = () => {
    waiting = false;
    while (sent < bytes && credit > 0) {
      if (ws.bufferedAmount > clientBuffer) {
        if (!waiting) {
          waiting = true;
          setTimeout(pump, 1);
        }
        return;
      }
      const n = Math.min(chunkSize, bytes - sent);
      const pkt = n === chunkSize ? fullPacket : encodeWispData(1, chunk.subarray(0, n));
      ws.send(pkt as Uint8Array<ArrayBuffer>);
      sendHash?.update(chunk.subarray(0, n));
      sent += n;
      credit--;
    }
  };

  ws.onmessage = (m) => {
    const d = decodeWispPacket(new Uint8Array(m.data as ArrayBuffer));
    if (!d.ok) return abort(new Error(`bench wisp: malformed packet from the server: ${d.msg}`));
    const p = d.packet;
    if (p.type === "continue") {
      credit = p.remaining;
      if (p.stream === 0 && started === 0) {
        ws.send(encodeWispPacket({ type: "connect", stream: 1, streamType: 1, port: targetPort, host: o.targetHost ?? "127.0.0.1" }) as Uint8Array<ArrayBuffer>);
        started = performance.now();
      }
      pump();
    } else if (p.type === "data" && p.stream === 1) {
      received += p.data.length;
      recvHash?.update(p.data);
      if (received >= bytes) finish((performance.now() - started) / 1000);
    } else if (p.type === "close") {
      abort(new Error(`bench wisp: stream closed by the server (reason 0x${p.reason.toString(16)}) after ${received}/${bytes} bytes`));
    }
  };
  ws.onclose = (c) => abort(new Error(`bench wisp: WebSocket closed (${c.code} ${c.reason}) after ${received}/${bytes} bytes`));
  ws.onerror = () => abort(new Error(`bench wisp: WebSocket error on ${url.href}`));

  const timeout = o.timeoutMs ?? 120_000;
  const timer = setTimeout(() => abort(new Error(`bench wisp: timed out after ${timeout} ms: sent ${sent}, echoed ${received} of ${bytes}`)), timeout);
  try {
    const secs = await done;
    if (verify && sendHash!.digest("hex") !== recvHash!.digest("hex")) throw new Error("bench wisp: echoed bytes differ from what was sent");
    return { mibPerSec: bytes / MIB / secs, secs, bytes };
  } finally {
    clearTimeout(timer);
    ws.onclose = null;
    ws.close();
  }
}
