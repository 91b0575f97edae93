// The one request/event model. Both codecs (JSON, binary) and every adapter translate to and
// from these types; the session logic only ever sees them.
import type { ErrorCode, Feature } from "./constants.ts";

export type Request =
  | { op: "connect"; id: number; addr: string; port: number }
  | { op: "connect_tls"; id: number; addr: string; port: number }
  | { op: "connect_udp"; id: number; addr: string; port: number }
  | { op: "bind"; id: number; addr: string; port: number }
  | { op: "listen"; id: number; backlog: number }
  | { op: "send"; id: number; data: Uint8Array }
  | { op: "send_to"; id: number; addr: string; port: number; data: Uint8Array }
  | { op: "close"; id: number }
  | { op: "resolve"; id: number; name: string }
  | { op: "shutdown"; id: number }
  | { op: "hello"; id: 0; version: number; features: string[] };

export type Op = Request["op"];

export interface HelloLimits {
  max_connections: number;
  max_message_bytes: number;
  stream_buffer_bytes: number;
  max_bandwidth_mbps: number;
}

export type Event =
  | { ev: "connected"; id: number }
  | { ev: "data"; id: number; data: Uint8Array }
  | { ev: "listening"; id: number; port: number }
  | { ev: "accepted"; id: number; connId: number; remote: string }
  | { ev: "closed"; id: number }
  | { ev: "error"; id: number; code: ErrorCode; msg: string }
  | { ev: "denied"; id: number; msg: string }
  | { ev: "data_from"; id: number; data: Uint8Array; addr: string; port: number }
  | { ev: "resolved"; id: number; addrs: string[] }
  | { ev: "udp_bound"; id: number; port: number }
  | { ev: "credit"; id: number; bytes: number }
  | { ev: "end"; id: number }
  | { ev: "hello"; id: 0; version: number; features: Feature[] | string[]; window: number; limits: HelloLimits };

export type EventName = Event["ev"];

/** A request the server could not read. `id` is 0 when no usable id could be read (docs/protocol.md#malformed-messages). */
export interface DecodeFailure {
  id: number;
  code: ErrorCode;
  msg: string;
}

export type Decoded = { ok: true; req: Request } | ({ ok: false } & DecodeFailure);

export type Framing = "json" | "binary";
