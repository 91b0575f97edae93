// JSON framing (text frames): `{"op": ...}` requests and `{"ev": ...}` events, binary data as base64.
import { DEFAULT_BACKLOG, ERROR_CODES, type ErrorCode } from "./constants.ts";
import type { Decoded, Event, Request } from "./messages.ts";
import { isValidId, requestProblem } from "./validate.ts";

const bad = (id: number, msg: string): Decoded => ({ ok: false, id, code: "EBADREQ", msg });

function fromBase64(s: string): Uint8Array | null {
  try {
    return Uint8Array.fromBase64(s);
  } catch {
    return null;
  }
}

const toBase64 = (b: Uint8Array): string => b.toBase64();

type Obj = Record<string, unknown>;
type Field<T> = { ok: true; v: T } | { ok: false; msg: string };

function str(o: Obj, k: string): Field<string> {
  const v = o[k];
  return typeof v === "string" ? { ok: true, v } : { ok: false, msg: `"${k}" must be a string` };
}
function int(o: Obj, k: string): Field<number> {
  const v = o[k];
  return typeof v === "number" && Number.isInteger(v) ? { ok: true, v } : { ok: false, msg: `"${k}" must be an integer` };
}
function b64(o: Obj, k: string): Field<Uint8Array> {
  const v = o[k];
  if (typeof v !== "string") return { ok: false, msg: `"${k}" must be a base64 string` };
  const bytes = fromBase64(v);
  return bytes ? { ok: true, v: bytes } : { ok: false, msg: `"${k}" is not valid base64` };
}

/** Decode one text frame into a request. Never throws. */
export function decodeJsonRequest(text: string): Decoded {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return bad(0, "message is not valid JSON");
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) return bad(0, "message must be a JSON object");
  const m = o as Obj;
  const op = m.op;
  if (typeof op !== "string") return bad(isValidId(m.id) ? m.id : 0, `"op" must be a string`);

  if (op === "hello") {
    const version = int(m, "version");
    if (!version.ok) return bad(0, version.msg);
    const features = m.features ?? [];
    if (!Array.isArray(features) || !features.every((f) => typeof f === "string"))
      return bad(0, `"features" must be an array of strings`);
    return finish({ op, id: 0, version: version.v, features: features as string[] });
  }

  if (!isValidId(m.id)) return bad(0, `"id" must be an integer 1-${Number.MAX_SAFE_INTEGER}`);
  const id = m.id;
  let req: Request;
  switch (op) {
    case "connect":
    case "connect_tls":
    case "connect_udp":
    case "bind": {
      const addr = str(m, "addr");
      if (!addr.ok) return bad(id, addr.msg);
      const port = int(m, "port");
      if (!port.ok) return bad(id, port.msg);
      req = { op, id, addr: addr.v, port: port.v };
      break;
    }
    case "listen": {
      let backlog = DEFAULT_BACKLOG;
      if (m.backlog !== undefined && m.backlog !== null) {
        const b = int(m, "backlog");
        if (!b.ok) return bad(id, b.msg);
        backlog = b.v;
      }
      req = { op, id, backlog };
      break;
    }
    case "send": {
      const data = b64(m, "data");
      if (!data.ok) return bad(id, data.msg);
      req = { op, id, data: data.v };
      break;
    }
    case "send_to": {
      const addr = str(m, "addr");
      if (!addr.ok) return bad(id, addr.msg);
      const port = int(m, "port");
      if (!port.ok) return bad(id, port.msg);
      const data = b64(m, "data");
      if (!data.ok) return bad(id, data.msg);
      req = { op, id, addr: addr.v, port: port.v, data: data.v };
      break;
    }
    case "resolve": {
      const name = str(m, "name");
      if (!name.ok) return bad(id, name.msg);
      req = { op, id, name: name.v };
      break;
    }
    case "close":
    case "shutdown":
      req = { op, id };
      break;
    default:
      return bad(id, `unknown op "${op.slice(0, 32)}"`);
  }
  return finish(req);
}

function finish(req: Request): Decoded {
  const problem = requestProblem(req);
  return problem ? bad(req.id, `${req.op}: ${problem}`) : { ok: true, req };
}

/** Encode one event as a JSON text frame. Field names match the original wasmnet. */
export function encodeJsonEvent(e: Event): string {
  switch (e.ev) {
    case "data":
      return `{"ev":"data","id":${e.id},"data":"${toBase64(e.data)}"}`;
    case "connected":
    case "closed":
    case "end":
      return `{"ev":"${e.ev}","id":${e.id}}`;
    case "accepted":
      return JSON.stringify({ ev: e.ev, id: e.id, conn_id: e.connId, remote: e.remote });
    case "data_from":
      return JSON.stringify({ ev: e.ev, id: e.id, data: toBase64(e.data), addr: e.addr, port: e.port });
    case "hello":
      return JSON.stringify({ ev: e.ev, version: e.version, features: e.features, window: e.window, limits: e.limits });
    default:
      return JSON.stringify(e);
  }
}

// ---- the other direction, for clients and tests ----

/** Encode a request as JSON (what a client sends). */
export function encodeJsonRequest(r: Request): string {
  switch (r.op) {
    case "send":
      return JSON.stringify({ op: r.op, id: r.id, data: toBase64(r.data) });
    case "send_to":
      return JSON.stringify({ op: r.op, id: r.id, addr: r.addr, port: r.port, data: toBase64(r.data) });
    case "hello":
      return JSON.stringify({ op: r.op, version: r.version, features: r.features });
    default:
      return JSON.stringify(r);
  }
}

/** Decode a JSON event (what a client receives). Throws on malformed input. */
export function decodeJsonEvent(text: string): Event {
  const m = JSON.parse(text) as Obj;
  const bytes = (k: string) => {
    const b = fromBase64(String(m[k]));
    if (!b) throw new Error(`event field "${k}" is not base64`);
    return b;
  };
  const id = Number(m.id ?? 0);
  switch (m.ev) {
    case "data":
      return { ev: "data", id, data: bytes("data") };
    case "data_from":
      return { ev: "data_from", id, data: bytes("data"), addr: String(m.addr), port: Number(m.port) };
    case "accepted":
      return { ev: "accepted", id, connId: Number(m.conn_id), remote: String(m.remote) };
    case "error": {
      const code = ERROR_CODES.includes(m.code as ErrorCode) ? (m.code as ErrorCode) : "EINTERNAL";
      return { ev: "error", id, code, msg: String(m.msg) };
    }
    case "hello":
      return { ev: "hello", id: 0, version: Number(m.version), features: (m.features as string[]) ?? [], window: Number(m.window), limits: m.limits as never };
    case "connected":
    case "closed":
    case "end":
    case "denied":
    case "listening":
    case "resolved":
    case "udp_bound":
    case "credit":
      return { ...(m as object), id } as Event;
    default:
      throw new Error(`unknown event "${String(m.ev)}"`);
  }
}

/**
 * The id of a JSON request too large to decode in full (it is over max_message_bytes), so the
 * error can go to its stream; 0 when none can be read.
 */
export function readJsonId(text: string): number {
  try {
    const id = (JSON.parse(text) as { id?: unknown })?.id;
    return isValidId(id) ? id : 0;
  } catch {
    return 0;
  }
}
