// Wire constants of the wasmnet protocol (docs/protocol.md#messages). Browser-safe: the client bundles this file.

/** Binary request type bytes (client → server). */
export const OP = {
  connect: 0x01,
  bind: 0x02,
  listen: 0x03,
  send: 0x04,
  close: 0x05,
  connect_udp: 0x06,
  send_to: 0x07,
  resolve: 0x08,
  connect_tls: 0x09,
  hello: 0x0a,
  shutdown: 0x0b,
} as const;

/** Binary event type bytes (server → client). */
export const EV = {
  connected: 0x81,
  data: 0x82,
  listening: 0x83,
  accepted: 0x84,
  closed: 0x85,
  error: 0x86,
  denied: 0x87,
  data_from: 0x88,
  resolved: 0x89,
  udp_bound: 0x8a,
  credit: 0x8b,
  hello: 0x8c,
  end: 0x8d,
} as const;

export const ERROR_CODES = [
  "ECONNREFUSED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENOTFOUND",
  "ETLS",
  "EADDRINUSE",
  "EBADREQ",
  "EBADID",
  "EIDINUSE",
  "ELIMIT",
  "EINTERNAL",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Binary header: u8 type + u64 id. */
export const HEADER_BYTES = 9;
/** Largest client id: ids must survive a round trip through a JSON number. */
export const MAX_ID = Number.MAX_SAFE_INTEGER;
export const PROTOCOL_VERSION = 2;
export const FEATURES = ["flow", "half_close"] as const;
export type Feature = (typeof FEATURES)[number];
export const DEFAULT_BACKLOG = 128;
/** Largest UDP payload over IPv4 (65535 − 8 UDP − 20 IP header bytes). */
export const MAX_DATAGRAM_BYTES = 65_507;
