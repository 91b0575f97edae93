// Binary framing: `[u8 type][u64 id][payload]`, every integer big-endian (docs/protocol.md#binary-framing).
import { DEFAULT_BACKLOG, ERROR_CODES, EV, HEADER_BYTES, MAX_ID, OP, type ErrorCode } from "./constants.ts";
import type { Decoded, Event, Request } from "./messages.ts";
import { requestProblem } from "./validate.ts";

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const TWO_32 = 2 ** 32;

const OP_BY_TYPE: Record<number, Request["op"]> = Object.fromEntries(Object.entries(OP).map(([k, v]) => [v, k])) as never;
const EV_BY_TYPE: Record<number, Event["ev"]> = Object.fromEntries(Object.entries(EV).map(([k, v]) => [v, k])) as never;

const u16 = (b: Uint8Array, o: number) => (b[o]! << 8) | b[o + 1]!;
const u32 = (b: Uint8Array, o: number) => ((b[o]! << 24) >>> 0) + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);

/** Reads the u64 id; returns -1 when it does not fit in 53 bits (ids must survive JSON). */
export function readId(b: Uint8Array, o = 1): number {
  const hi = u32(b, o);
  if (hi > 0x1fffff) return -1;
  return hi * TWO_32 + u32(b, o + 4);
}

function putU16(b: Uint8Array, o: number, v: number) { b[o] = (v >>> 8) & 0xff; b[o + 1] = v & 0xff; }
function putU32(b: Uint8Array, o: number, v: number) { b[o] = v >>> 24; b[o + 1] = (v >>> 16) & 0xff; b[o + 2] = (v >>> 8) & 0xff; b[o + 3] = v & 0xff; }
function putU64(b: Uint8Array, o: number, v: number) { putU32(b, o, Math.floor(v / TWO_32)); putU32(b, o + 4, v >>> 0); }

/**
 * Returns a buffer of exactly n bytes; the encoder writes every one of them. The server passes
 * one that reuses a scratch buffer (its frames live only until the next encode); the default
 * allocates.
 */
export type Alloc = (n: number) => Uint8Array;
export const freshBuffer: Alloc = (n) => new Uint8Array(n);

function frame(alloc: Alloc, type: number, id: number, payloadBytes: number): Uint8Array {
  const out = alloc(HEADER_BYTES + payloadBytes);
  out[0] = type;
  putU64(out, 1, id);
  return out;
}

function text(b: Uint8Array): string | null {
  try {
    return strictUtf8.decode(b);
  } catch {
    return null;
  }
}

/** Decode one binary frame into a request. Never throws. */
export function decodeBinaryRequest(b: Uint8Array): Decoded {
  const bad = (id: number, msg: string): Decoded => ({ ok: false, id, code: "EBADREQ", msg });
  if (b.length < HEADER_BYTES) return bad(0, `binary frame of ${b.length} bytes is shorter than the 9-byte header`);
  const type = b[0]!;
  const id = readId(b);
  if (id < 0) return bad(0, `id does not fit in 53 bits (max ${MAX_ID})`);
  const op = OP_BY_TYPE[type];
  if (op === undefined) return bad(id, `unknown binary request type 0x${type.toString(16).padStart(2, "0")}`);
  const p = b.subarray(HEADER_BYTES);

  if (op === "hello") {
    const t = text(p);
    let m: { version?: unknown; features?: unknown } | null = null;
    try {
      m = t === null ? null : JSON.parse(t);
    } catch {}
    if (!m || typeof m !== "object") return bad(0, "hello payload must be a JSON object");
    const features = m.features ?? [];
    if (typeof m.version !== "number" || !Array.isArray(features) || !features.every((f) => typeof f === "string"))
      return bad(0, "hello payload needs a numeric version and an array of feature strings");
    return finish({ op, id: 0, version: m.version, features });
  }
  if (id === 0) return bad(0, `id 0 is reserved for session messages`);

  let req: Request;
  switch (op) {
    case "connect":
    case "connect_tls":
    case "connect_udp":
    case "bind": {
      if (p.length < 2) return bad(id, `${op}: payload needs a u16 port and an address`);
      const addr = text(p.subarray(2));
      if (addr === null) return bad(id, `${op}: address is not valid UTF-8`);
      req = { op, id, port: u16(p, 0), addr };
      break;
    }
    case "listen":
      if (p.length !== 0 && p.length !== 4) return bad(id, `listen: payload must be empty or a u32 backlog`);
      req = { op, id, backlog: p.length === 4 ? u32(p, 0) : DEFAULT_BACKLOG };
      break;
    case "send":
      req = { op, id, data: p };
      break;
    case "send_to": {
      if (p.length < 4) return bad(id, `send_to: payload needs u16 port and u16 address length`);
      const len = u16(p, 2);
      if (p.length < 4 + len) return bad(id, `send_to: address length ${len} runs past the frame`);
      const addr = text(p.subarray(4, 4 + len));
      if (addr === null) return bad(id, `send_to: address is not valid UTF-8`);
      req = { op, id, port: u16(p, 0), addr, data: p.subarray(4 + len) };
      break;
    }
    case "resolve": {
      const name = text(p);
      if (name === null) return bad(id, `resolve: name is not valid UTF-8`);
      req = { op, id, name };
      break;
    }
    case "close":
    case "shutdown":
      req = { op, id };
      break;
  }
  return finish(req);
}

function finish(req: Request): Decoded {
  const problem = requestProblem(req);
  return problem ? { ok: false, id: req.id, code: "EBADREQ", msg: `${req.op}: ${problem}` } : { ok: true, req };
}

/** `send_to` and `data_from`: u16 port, u16 address length, address, datagram. */
function addressedFrame(alloc: Alloc, type: number, id: number, port: number, addrText: string, data: Uint8Array): Uint8Array {
  const addr = utf8.encode(addrText);
  const out = frame(alloc, type, id, 4 + addr.length + data.length);
  putU16(out, HEADER_BYTES, port);
  putU16(out, HEADER_BYTES + 2, addr.length);
  out.set(addr, HEADER_BYTES + 4);
  out.set(data, HEADER_BYTES + 4 + addr.length);
  return out;
}

/** A frame whose payload is `prefix` bytes for the caller to fill, then the UTF-8 text. */
function withText(alloc: Alloc, type: number, id: number, s: string, prefix = 0): Uint8Array {
  const bytes = utf8.encode(s);
  const out = frame(alloc, type, id, prefix + bytes.length);
  out.set(bytes, HEADER_BYTES + prefix);
  return out;
}

/** Encode one event as a binary frame, in memory from `alloc`. */
export function encodeBinaryEvent(e: Event, alloc: Alloc = freshBuffer): Uint8Array {
  const type = EV[e.ev];
  switch (e.ev) {
    case "data": {
      const out = frame(alloc, type, e.id, e.data.length);
      out.set(e.data, HEADER_BYTES);
      return out;
    }
    case "connected":
    case "closed":
    case "end":
      return frame(alloc, type, e.id, 0);
    case "listening":
    case "udp_bound": {
      const out = frame(alloc, type, e.id, 2);
      putU16(out, HEADER_BYTES, e.port);
      return out;
    }
    case "credit": {
      const out = frame(alloc, type, e.id, 4);
      putU32(out, HEADER_BYTES, Math.min(e.bytes, 0xffffffff));
      return out;
    }
    case "accepted": {
      const out = withText(alloc, type, e.id, e.remote, 8);
      putU64(out, HEADER_BYTES, e.connId);
      return out;
    }
    case "error":
      return withText(alloc, type, e.id, `${e.code}: ${e.msg}`);
    case "denied":
      return withText(alloc, type, e.id, e.msg);
    case "resolved":
      return withText(alloc, type, e.id, JSON.stringify(e.addrs));
    case "hello":
      return withText(alloc, type, 0, JSON.stringify({ version: e.version, features: e.features, window: e.window, limits: e.limits }));
    case "data_from":
      return addressedFrame(alloc, type, e.id, e.port, e.addr, e.data);
  }
}

// ---- the other direction, for clients and tests ----

/** Encode a request as a binary frame (what a client sends). */
export function encodeBinaryRequest(r: Request, alloc: Alloc = freshBuffer): Uint8Array {
  const type = OP[r.op];
  switch (r.op) {
    case "connect":
    case "connect_tls":
    case "connect_udp":
    case "bind": {
      const out = withText(alloc, type, r.id, r.addr, 2);
      putU16(out, HEADER_BYTES, r.port);
      return out;
    }
    case "listen": {
      const out = frame(alloc, type, r.id, 4);
      putU32(out, HEADER_BYTES, r.backlog);
      return out;
    }
    case "send": {
      const out = frame(alloc, type, r.id, r.data.length);
      out.set(r.data, HEADER_BYTES);
      return out;
    }
    case "send_to":
      return addressedFrame(alloc, type, r.id, r.port, r.addr, r.data);
    case "resolve":
      return withText(alloc, type, r.id, r.name);
    case "hello":
      return withText(alloc, type, 0, JSON.stringify({ version: r.version, features: r.features }));
    case "close":
    case "shutdown":
      return frame(alloc, type, r.id, 0);
  }
}

/** Decode a binary event (what a client receives). Throws on malformed input. */
export function decodeBinaryEvent(b: Uint8Array): Event {
  if (b.length < HEADER_BYTES) throw new Error("binary event shorter than its header");
  const ev = EV_BY_TYPE[b[0]!];
  if (!ev) throw new Error(`unknown binary event type 0x${b[0]!.toString(16)}`);
  const id = readId(b);
  const p = b.subarray(HEADER_BYTES);
  const s = () => new TextDecoder().decode(p);
  switch (ev) {
    case "connected":
    case "closed":
    case "end":
      return { ev, id };
    case "data":
      return { ev, id, data: p };
    case "listening":
    case "udp_bound":
      return { ev, id, port: u16(p, 0) };
    case "credit":
      return { ev, id, bytes: u32(p, 0) };
    case "accepted":
      return { ev, id, connId: readId(p, 0), remote: new TextDecoder().decode(p.subarray(8)) };
    case "error": {
      const t = s();
      const colon = t.indexOf(": ");
      const code = colon > 0 ? t.slice(0, colon) : "";
      return ERROR_CODES.includes(code as ErrorCode)
        ? { ev, id, code: code as ErrorCode, msg: t.slice(colon + 2) }
        : { ev, id, code: "EINTERNAL", msg: t };
    }
    case "denied":
      return { ev, id, msg: s() };
    case "resolved":
      return { ev, id, addrs: JSON.parse(s()) };
    case "hello": {
      const m = JSON.parse(s());
      return { ev, id: 0, version: m.version, features: m.features ?? [], window: m.window, limits: m.limits };
    }
    case "data_from": {
      const len = u16(p, 2);
      return { ev, id, port: u16(p, 0), addr: new TextDecoder().decode(p.subarray(4, 4 + len)), data: p.subarray(4 + len) };
    }
  }
}
