// The Wisp wire format (MercuryWorkshop wisp-protocol v1.2 and the v2 INFO/extension draft),
// as a pure codec: bytes <-> packets, nothing else. Every packet is
// `[u8 type][u32 LE stream id][payload]`; every integer in Wisp is little-endian. Where the
// spec is loose, this follows the @mercuryworkshop/wisp-js client (packet.mjs, extensions.mjs).
// Browser-safe: no Bun or Node APIs.

import type { ErrorCode } from "./constants.ts";

export const WISP_HEADER_BYTES = 5;

export const WISP_TYPE = {
  connect: 0x01,
  data: 0x02,
  continue: 0x03,
  close: 0x04,
  info: 0x05,
} as const;

export const WISP_STREAM = { tcp: 0x01, udp: 0x02 } as const;

/** CLOSE reasons (spec "Close Reasons"; 0xc0-0xc2 come from the password/key auth extensions). */
export const WISP_CLOSE = {
  unknown: 0x01,
  voluntary: 0x02,
  networkError: 0x03,
  incompatibleExtensions: 0x04,
  invalidInfo: 0x41,
  unreachable: 0x42,
  noResponse: 0x43,
  refused: 0x44,
  transferTimeout: 0x47,
  blocked: 0x48,
  throttled: 0x49,
  clientError: 0x81,
  authBadPassword: 0xc0,
  authBadSignature: 0xc1,
  authMissingCredentials: 0xc2,
} as const;

/** A wasmnet error code as the Wisp CLOSE reason a Wisp client understands. */
export function wispCloseReason(code: ErrorCode): number {
  switch (code) {
    case "ECONNREFUSED":
      return WISP_CLOSE.refused;
    case "ETIMEDOUT":
      return WISP_CLOSE.noResponse;
    case "EHOSTUNREACH":
    case "ENOTFOUND":
      return WISP_CLOSE.unreachable;
    case "ELIMIT":
      return WISP_CLOSE.throttled;
    case "EBADREQ":
    case "EBADID":
    case "EIDINUSE":
      return WISP_CLOSE.invalidInfo;
    default:
      return WISP_CLOSE.networkError;
  }
}

/** v2 extension ids (wisp-js extensions.mjs: UDP 0x01, password 0x02, MOTD 0x04; key auth 0x03 and
 * stream-open confirmation 0x05 from the v2 spec; wisp-js 0.5 skips ids it does not know). */
export const WISP_EXT = {
  udp: 0x01,
  passwordAuth: 0x02,
  keyAuth: 0x03,
  motd: 0x04,
  streamConfirmation: 0x05,
} as const;

export interface WispExtension {
  id: number;
  payload: Uint8Array;
}

export type WispPacket =
  | { type: "connect"; stream: number; streamType: number; port: number; host: string }
  | { type: "data"; stream: number; data: Uint8Array }
  | { type: "continue"; stream: number; remaining: number }
  | { type: "close"; stream: number; reason: number }
  | { type: "info"; stream: number; major: number; minor: number; extensions: WispExtension[] };

/** A packet that could not be read. `stream` is null when the header itself was short. */
export interface WispDecodeError {
  ok: false;
  stream: number | null;
  type: number | null;
  msg: string;
}

export type WispDecoded = { ok: true; packet: WispPacket } | WispDecodeError;

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function header(type: number, stream: number, payloadBytes: number): { buf: Uint8Array; view: DataView } {
  const buf = new Uint8Array(WISP_HEADER_BYTES + payloadBytes);
  const view = new DataView(buf.buffer);
  view.setUint8(0, type);
  view.setUint32(1, stream >>> 0, true);
  return { buf, view };
}

/** DATA, the hot path: one allocation, one copy. */
export function encodeWispData(stream: number, data: Uint8Array): Uint8Array {
  const { buf } = header(WISP_TYPE.data, stream, data.length);
  buf.set(data, WISP_HEADER_BYTES);
  return buf;
}

export function encodeWispContinue(stream: number, remaining: number): Uint8Array {
  const { buf, view } = header(WISP_TYPE.continue, stream, 4);
  view.setUint32(5, remaining >>> 0, true);
  return buf;
}

export function encodeWispClose(stream: number, reason: number): Uint8Array {
  const { buf, view } = header(WISP_TYPE.close, stream, 1);
  view.setUint8(5, reason);
  return buf;
}

export function encodeWispExtensions(exts: WispExtension[]): Uint8Array {
  let n = 0;
  for (const e of exts) n += 5 + e.payload.length;
  const out = new Uint8Array(n);
  const view = new DataView(out.buffer);
  let o = 0;
  for (const e of exts) {
    view.setUint8(o, e.id);
    view.setUint32(o + 1, e.payload.length, true);
    out.set(e.payload, o + 5);
    o += 5 + e.payload.length;
  }
  return out;
}

/** The extension list of an INFO payload: `[u8 id][u32 LE length][payload]…`; null if truncated. */
export function decodeWispExtensions(b: Uint8Array): WispExtension[] | null {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: WispExtension[] = [];
  let o = 0;
  while (o < b.length) {
    if (b.length - o < 5) return null;
    const id = view.getUint8(o);
    const len = view.getUint32(o + 1, true);
    if (b.length - o - 5 < len) return null;
    out.push({ id, payload: b.subarray(o + 5, o + 5 + len) });
    o += 5 + len;
  }
  return out;
}

export function encodeWispPacket(p: WispPacket): Uint8Array {
  switch (p.type) {
    case "data":
      return encodeWispData(p.stream, p.data);
    case "continue":
      return encodeWispContinue(p.stream, p.remaining);
    case "close":
      return encodeWispClose(p.stream, p.reason);
    case "connect": {
      const host = utf8.encode(p.host);
      const { buf, view } = header(WISP_TYPE.connect, p.stream, 3 + host.length);
      view.setUint8(5, p.streamType);
      view.setUint16(6, p.port, true);
      buf.set(host, 8);
      return buf;
    }
    case "info": {
      const ext = encodeWispExtensions(p.extensions);
      const { buf, view } = header(WISP_TYPE.info, p.stream, 2 + ext.length);
      view.setUint8(5, p.major);
      view.setUint8(6, p.minor);
      buf.set(ext, 7);
      return buf;
    }
  }
}

function fail(stream: number | null, type: number | null, msg: string): WispDecodeError {
  return { ok: false, stream, type, msg };
}

/** Decode one WebSocket message. Payload views share the message's memory (no copy). */
export function decodeWispPacket(b: Uint8Array): WispDecoded {
  if (b.length < WISP_HEADER_BYTES) return fail(null, null, `packet of ${b.length} bytes is shorter than the 5-byte header`);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const type = view.getUint8(0);
  const stream = view.getUint32(1, true);
  const n = b.length - WISP_HEADER_BYTES;
  switch (type) {
    case WISP_TYPE.data:
      return { ok: true, packet: { type: "data", stream, data: b.subarray(WISP_HEADER_BYTES) } };
    case WISP_TYPE.connect: {
      if (n < 3) return fail(stream, type, `CONNECT payload of ${n} bytes is shorter than 3`);
      let host: string;
      try {
        host = strictUtf8.decode(b.subarray(8));
      } catch {
        return fail(stream, type, "CONNECT hostname is not valid UTF-8");
      }
      return { ok: true, packet: { type: "connect", stream, streamType: view.getUint8(5), port: view.getUint16(6, true), host } };
    }
    case WISP_TYPE.continue:
      if (n < 4) return fail(stream, type, `CONTINUE payload of ${n} bytes is shorter than 4`);
      return { ok: true, packet: { type: "continue", stream, remaining: view.getUint32(5, true) } };
    case WISP_TYPE.close:
      if (n < 1) return fail(stream, type, "CLOSE without a reason byte");
      return { ok: true, packet: { type: "close", stream, reason: view.getUint8(5) } };
    case WISP_TYPE.info: {
      if (n < 2) return fail(stream, type, `INFO payload of ${n} bytes is shorter than 2`);
      const extensions = decodeWispExtensions(b.subarray(7));
      if (extensions === null) return fail(stream, type, "INFO extension list is truncated");
      return { ok: true, packet: { type: "info", stream, major: view.getUint8(5), minor: view.getUint8(6), extensions } };
    }
    default:
      return fail(stream, type, `unknown packet type 0x${type.toString(16).padStart(2, "0")}`);
  }
}

// ---- extension payloads ----

/** Password auth, client side: `[u8 user length][u16 LE password length][user][password]`. */
export function encodeWispPasswordClient(user: string, password: string): Uint8Array {
  const u = utf8.encode(user);
  const p = utf8.encode(password);
  if (u.length > 0xff || p.length > 0xffff) throw new RangeError("username or password too long for Wisp password auth");
  const out = new Uint8Array(3 + u.length + p.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, u.length);
  view.setUint16(1, p.length, true);
  out.set(u, 3);
  out.set(p, 3 + u.length);
  return out;
}

export function decodeWispPasswordClient(b: Uint8Array): { user: string; password: string } | null {
  if (b.length < 3) return null;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const ul = view.getUint8(0);
  const pl = view.getUint16(1, true);
  if (b.length < 3 + ul + pl) return null;
  try {
    return { user: strictUtf8.decode(b.subarray(3, 3 + ul)), password: strictUtf8.decode(b.subarray(3 + ul, 3 + ul + pl)) };
  } catch {
    return null;
  }
}

/** Password auth, server side: `[u8 required]`. */
export function encodeWispPasswordServer(required: boolean): Uint8Array {
  return Uint8Array.of(required ? 1 : 0);
}

export function encodeWispMotd(message: string): Uint8Array {
  return utf8.encode(message);
}

export function decodeWispMotd(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}

// ---- key authentication (extension 0x03) ----
// Server: `[u8 required][u8 supported algorithms, a bit mask][challenge]`; client:
// `[u8 chosen algorithm][32-byte SHA-256 of its raw public key][signature of the challenge]`.
// The layout of the Wisp v2 draft as epoxy-tls's wisp-mux implements it (wisp-js 0.5 has no
// key authentication).

/** Key algorithms (bit mask in the server's offer, one bit in the client's answer). */
export const WISP_KEY_ALG = { ed25519: 0x01 } as const;
/** Bytes of random challenge the server sends (what wisp-mux sends). */
export const WISP_KEY_CHALLENGE_BYTES = 64;
export const WISP_KEY_HASH_BYTES = 32;
export const WISP_ED25519_SIGNATURE_BYTES = 64;

export interface WispKeyOffer {
  required: boolean;
  algorithms: number;
  challenge: Uint8Array;
}

export interface WispKeyAnswer {
  algorithm: number;
  /** SHA-256 of the client's raw public key. */
  keyHash: Uint8Array;
  signature: Uint8Array;
}

export function encodeWispKeyServer(o: WispKeyOffer): Uint8Array {
  const out = new Uint8Array(2 + o.challenge.length);
  out[0] = o.required ? 1 : 0;
  out[1] = o.algorithms;
  out.set(o.challenge, 2);
  return out;
}

export function decodeWispKeyServer(b: Uint8Array): WispKeyOffer | null {
  if (b.length < 2) return null;
  return { required: b[0] !== 0, algorithms: b[1]!, challenge: b.subarray(2) };
}

export function encodeWispKeyClient(a: WispKeyAnswer): Uint8Array {
  if (a.keyHash.length !== WISP_KEY_HASH_BYTES) throw new RangeError(`key hash must be ${WISP_KEY_HASH_BYTES} bytes`);
  const out = new Uint8Array(1 + WISP_KEY_HASH_BYTES + a.signature.length);
  out[0] = a.algorithm;
  out.set(a.keyHash, 1);
  out.set(a.signature, 1 + WISP_KEY_HASH_BYTES);
  return out;
}

/** Null when too short to hold an algorithm, a hash and a signature of at least one byte. */
export function decodeWispKeyClient(b: Uint8Array): WispKeyAnswer | null {
  if (b.length < 1 + WISP_KEY_HASH_BYTES + 1) return null;
  return { algorithm: b[0]!, keyHash: b.subarray(1, 1 + WISP_KEY_HASH_BYTES), signature: b.subarray(1 + WISP_KEY_HASH_BYTES) };
}
