// A client of wasmnet's /posix/ endpoint that speaks the wire format of Emscripten's stub
// (docs/posix.md) directly: requests built byte by byte here, replies paired by callId. The
// server side decodes with src/protocol/posix.ts; building requests independently here means
// a layout mistake on either side shows.
import {
  AF,
  GAI_NODE_BYTES,
  GAI_SERVICE_BYTES,
  POSIX_CALL,
  SENDTO_ADDR_FIELD_BYTES,
  decodeSockaddr,
  encodeSockaddr,
  type Sockaddr,
  type SockaddrInput,
} from "../../src/protocol/posix.ts";
import { withTimeout } from "./wait.ts";

export interface Reply {
  callId: number;
  ret: number;
  errno: number;
  /** The whole reply message. */
  bytes: Uint8Array;
}

export interface Hints {
  flags?: number;
  family?: number;
  socktype?: number;
  protocol?: number;
}

export interface AddrinfoRecord {
  flags: number;
  family: number;
  socktype: number;
  protocol: number;
  addr: Sockaddr;
}

const te = new TextEncoder();

/** Little-endian i32 fields, then raw bytes. */
export function msg(fields: number[], ...tails: Uint8Array[]): Uint8Array {
  const size = fields.length * 4 + tails.reduce((n, t) => n + t.length, 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  fields.forEach((v, i) => (v < 0 ? view.setInt32(i * 4, v, true) : view.setUint32(i * 4, v >>> 0, true)));
  let at = fields.length * 4;
  for (const t of tails) {
    out.set(t, at);
    at += t.length;
  }
  return out;
}

export function sockaddr(address: string, port: number): Uint8Array {
  const family = address.includes(":") ? "ipv6" : "ipv4";
  const b = encodeSockaddr({ family, address, port } as SockaddrInput);
  if (!b) throw new Error(`bad address ${address}`);
  return b;
}

/** Request encoders: each returns the message without deciding the callId (0 placeholder, set by the client). */
export const req = {
  socket: (domain: number, type: number, protocol = 0) => msg([0, POSIX_CALL.socket, domain, type, protocol]),
  socketpair: (domain: number, type: number, protocol = 0) => msg([0, POSIX_CALL.socketpair, domain, type, protocol]),
  shutdown: (fd: number, how: number) => msg([0, POSIX_CALL.shutdown, fd, how]),
  bind: (fd: number, addr: Uint8Array) => msg([0, POSIX_CALL.bind, fd, addr.length], addr),
  connect: (fd: number, addr: Uint8Array) => msg([0, POSIX_CALL.connect, fd, addr.length], addr),
  listen: (fd: number, backlog: number) => msg([0, POSIX_CALL.listen, fd, backlog]),
  accept: (fd: number, cap = 128) => msg([0, POSIX_CALL.accept, fd, cap]),
  getsockname: (fd: number, cap = 256) => msg([0, POSIX_CALL.getsockname, fd, cap]),
  getpeername: (fd: number, cap = 256) => msg([0, POSIX_CALL.getpeername, fd, cap]),
  send: (fd: number, data: Uint8Array, flags = 0) => msg([0, POSIX_CALL.send, fd, data.length, flags], data),
  recv: (fd: number, maxlen: number, flags = 0) => msg([0, POSIX_CALL.recv, fd, maxlen, flags]),
  sendto: (fd: number, data: Uint8Array, dest: Uint8Array | null, flags = 0) => {
    const field = new Uint8Array(SENDTO_ADDR_FIELD_BYTES);
    if (dest) field.set(dest);
    return msg([0, POSIX_CALL.sendto, fd, data.length, flags, dest ? dest.length : 0], field, data);
  },
  recvfrom: (fd: number, maxlen: number, flags = 0, cap = 128) => msg([0, POSIX_CALL.recvfrom, fd, maxlen, flags, cap]),
  getsockopt: (fd: number, level: number, name: number, optlen = 4) => msg([0, POSIX_CALL.getsockopt, fd, level, name, optlen]),
  setsockopt: (fd: number, level: number, name: number, value: Uint8Array) => msg([0, POSIX_CALL.setsockopt, fd, level, name, value.length], value),
  getaddrinfo: (node: string | null, service: string | null, hints: Hints | null) => {
    const n = new Uint8Array(GAI_NODE_BYTES);
    if (node) n.set(te.encode(node));
    const s = new Uint8Array(GAI_SERVICE_BYTES);
    if (service) s.set(te.encode(service));
    const h = hints ?? {};
    return msg([0, POSIX_CALL.getaddrinfo], n, s, msg([hints ? 1 : 0, h.flags ?? 0, h.family ?? 0, h.socktype ?? 0, h.protocol ?? 0]));
  },
};

export function int32(v: number): Uint8Array {
  return msg([v]);
}

/** struct timeval { i32 sec; i32 usec } */
export function timeval(ms: number): Uint8Array {
  return msg([Math.floor(ms / 1000), (ms % 1000) * 1000]);
}

// ---- reply readers ----

const i32 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset, b.byteLength).getInt32(at, true);

/** recv: the ret bytes after the header. */
export function recvData(r: Reply): Uint8Array {
  return r.bytes.subarray(12, 12 + Math.max(0, r.ret));
}

/** recvfrom: data and the sender's address. */
export function recvfromParts(r: Reply): { data: Uint8Array; addrlen: number; from: Sockaddr | null } {
  const dataLen = i32(r.bytes, 12);
  const addrlen = i32(r.bytes, 16);
  const data = r.bytes.subarray(20, 20 + dataLen);
  const a = addrlen > 0 ? decodeSockaddr(r.bytes.subarray(20 + dataLen, 20 + dataLen + addrlen)) : null;
  return { data, addrlen, from: a && a.ok ? a.addr : null };
}

/** accept / getsockname / getpeername: i32 addrlen then the address. */
export function addressOf(r: Reply): { addrlen: number; addr: Sockaddr | null } {
  const addrlen = i32(r.bytes, 12);
  const a = addrlen > 0 ? decodeSockaddr(r.bytes.subarray(16, 16 + addrlen)) : null;
  return { addrlen, addr: a && a.ok ? a.addr : null };
}

export function optionValue(r: Reply): Uint8Array {
  return r.bytes.subarray(12);
}

export function addrinfo(r: Reply): { canonname: string; records: AddrinfoRecord[] } {
  const b = r.bytes;
  const nameField = b.subarray(12, 12 + GAI_NODE_BYTES);
  const end = nameField.indexOf(0);
  const canonname = new TextDecoder().decode(nameField.subarray(0, end < 0 ? nameField.length : end));
  const count = i32(b, 12 + GAI_NODE_BYTES);
  const records: AddrinfoRecord[] = [];
  let at = 12 + GAI_NODE_BYTES + 4;
  for (let i = 0; i < count; i++) {
    const addrlen = i32(b, at + 16);
    const a = decodeSockaddr(b.subarray(at + 20, at + 20 + addrlen));
    if (!a.ok) throw new Error(`record ${i}: ${a.reason}`);
    records.push({ flags: i32(b, at), family: i32(b, at + 4), socktype: i32(b, at + 8), protocol: i32(b, at + 12), addr: a.addr });
    at += 20 + addrlen;
  }
  if (at !== b.length) throw new Error(`getaddrinfo reply has ${b.length - at} bytes after its records`);
  return { canonname, records };
}

export const fam = (a: Sockaddr | null) => (a ? `${a.family === "ipv4" ? "" : "["}${a.address}${a.family === "ipv4" ? "" : "]"}:${a.port}` : "none");

// ---- the client ----

export class PosixClient {
  private nextCallId = 1;
  private readonly pending = new Map<number, (r: Reply) => void>();
  /** Every reply in arrival order (callIds). */
  readonly order: number[] = [];
  /** Replies whose callId nobody waited for. */
  readonly unexpected: Reply[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.binaryType = "arraybuffer";
    ws.onmessage = (m) => {
      if (typeof m.data === "string") return void this.unexpected.push({ callId: -1, ret: 0, errno: 0, bytes: te.encode(m.data) });
      const bytes = new Uint8Array(m.data as ArrayBuffer);
      const r: Reply = bytes.length >= 12 ? { callId: i32(bytes, 0), ret: i32(bytes, 4), errno: i32(bytes, 8), bytes } : { callId: -1, ret: 0, errno: 0, bytes };
      this.order.push(r.callId);
      const w = this.pending.get(r.callId);
      if (!w) return void this.unexpected.push(r);
      this.pending.delete(r.callId);
      w(r);
    };
    this.closed = new Promise((resolve) => (ws.onclose = (e) => resolve({ code: e.code, reason: e.reason })));
  }

  static async open(url: string): Promise<PosixClient> {
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener("open", () => resolve(), { once: true });
      ws.addEventListener("error", () => reject(new Error(`websocket ${url} failed to open`)), { once: true });
    });
    return new PosixClient(ws);
  }

  /** Requests sent that carry a callId (raw ones included when they do). */
  sent = 0;

  /** Calls still waiting for their reply. */
  get waiting(): number[] {
    return [...this.pending.keys()];
  }

  /** Every request got exactly one reply, and no reply came for a callId nobody asked about. */
  get allAnswered(): { waiting: number[]; unexpected: number[]; replies: number; sent: number } {
    return { waiting: this.waiting, unexpected: this.unexpected.map((r) => r.callId), replies: this.order.length, sent: this.sent };
  }

  /** Sends a request (callId filled in) and returns its callId and the promise of its reply. */
  issue(request: Uint8Array): { callId: number; reply: Promise<Reply> } {
    const callId = this.nextCallId++;
    const m = request.slice();
    new DataView(m.buffer).setInt32(0, callId, true);
    const reply = new Promise<Reply>((resolve) => this.pending.set(callId, resolve));
    this.sent++;
    this.ws.send(m);
    return { callId, reply };
  }

  /** A request and its reply (failing the test if none comes within `timeoutMs`). */
  async call(request: Uint8Array, timeoutMs = 10_000): Promise<Reply> {
    const { callId, reply } = this.issue(request);
    return withTimeout(reply, `the reply to call ${callId} (function ${new DataView(request.buffer, request.byteOffset).getInt32(4, true)})`, timeoutMs);
  }

  /** Raw bytes as one message, callId untouched; `expect` registers a waiter for that callId. */
  raw(bytes: Uint8Array<ArrayBuffer>, expect?: number): Promise<Reply> | null {
    const p = expect === undefined ? null : new Promise<Reply>((resolve) => this.pending.set(expect, resolve));
    if (expect !== undefined) this.sent++;
    this.ws.send(bytes);
    return p;
  }

  /** The callId the next `issue` will use (for raw messages that mimic the stub's numbering). */
  takeCallId(): number {
    return this.nextCallId++;
  }

  // Shorthands that return the reply.
  socket = (domain: number = AF.INET, type = 1, protocol = 0) => this.call(req.socket(domain, type, protocol));
  async fd(domain: number = AF.INET, type = 1): Promise<number> {
    const r = await this.socket(domain, type);
    if (r.ret < 3) throw new Error(`socket() failed: ret ${r.ret} errno ${r.errno}`);
    return r.ret;
  }

  close(): void {
    this.ws.close();
  }
}
