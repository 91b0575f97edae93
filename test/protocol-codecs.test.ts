// Both codecs, both directions: every op and event round-trips, and the wire bytes of the
// binary framing match docs/protocol.md byte for byte.
import { describe, expect, test } from "bun:test";
import { decodeBinaryEvent, decodeBinaryRequest, encodeBinaryEvent, encodeBinaryRequest } from "../src/protocol/binary.ts";
import { decodeJsonEvent, decodeJsonRequest, encodeJsonEvent, encodeJsonRequest } from "../src/protocol/json.ts";
import type { Event, Request } from "../src/protocol/messages.ts";

const bytes = (...b: number[]) => new Uint8Array(b);
const BIG = 2 ** 53 - 1;

const requests: Request[] = [
  { op: "connect", id: 1, addr: "example.com", port: 80 },
  { op: "connect_tls", id: 2, addr: "2001:db8::1", port: 443 },
  { op: "connect_udp", id: 3, addr: "127.0.0.1", port: 53 },
  { op: "bind", id: 4, addr: "0.0.0.0", port: 0 },
  { op: "listen", id: 4, backlog: 16 },
  { op: "send", id: BIG, data: bytes(0, 1, 2, 255) },
  { op: "send", id: 5, data: bytes() },
  { op: "send_to", id: 3, addr: "::1", port: 5353, data: bytes(9, 8, 7) },
  { op: "close", id: 6 },
  { op: "resolve", id: 7, name: "localhost" },
  { op: "shutdown", id: 8 },
  { op: "hello", id: 0, version: 2, features: ["flow", "half_close"] },
];

const events: Event[] = [
  { ev: "connected", id: 1 },
  { ev: "data", id: BIG, data: bytes(1, 2, 3) },
  { ev: "listening", id: 4, port: 8080 },
  { ev: "accepted", id: 4, connId: 2 ** 52 + 7, remote: "127.0.0.1:5000" },
  { ev: "closed", id: 1 },
  { ev: "error", id: 1, code: "ECONNREFUSED", msg: "connect 127.0.0.1:5 refused" },
  { ev: "denied", id: 1, msg: 'deny "nonpublic": 127.0.0.1 is loopback' },
  { ev: "data_from", id: 3, data: bytes(4, 5), addr: "::1", port: 53 },
  { ev: "resolved", id: 7, addrs: ["127.0.0.1", "::1"] },
  { ev: "udp_bound", id: 3, port: 40000 },
  { ev: "credit", id: 1, bytes: 65536 },
  { ev: "end", id: 1 },
  { ev: "hello", id: 0, version: 2, features: ["flow"], window: 1048576, limits: { max_connections: 50, max_message_bytes: 1048576, stream_buffer_bytes: 1048576, max_bandwidth_mbps: 10 } },
];

describe("requests round-trip", () => {
  for (const r of requests) {
    test(`json ${r.op}`, () => {
      const d = decodeJsonRequest(encodeJsonRequest(r));
      expect(d).toEqual({ ok: true, req: r });
    });
    test(`binary ${r.op}`, () => {
      const d = decodeBinaryRequest(encodeBinaryRequest(r));
      expect(d.ok).toBe(true);
      if (d.ok) expect({ ...d.req, ...("data" in d.req ? { data: new Uint8Array(d.req.data) } : {}) }).toEqual(r);
    });
  }
});

describe("events round-trip", () => {
  for (const e of events) {
    test(`json ${e.ev}`, () => expect(decodeJsonEvent(encodeJsonEvent(e))).toEqual(e));
    test(`binary ${e.ev}`, () => {
      const got = decodeBinaryEvent(encodeBinaryEvent(e));
      expect({ ...got, ...("data" in got ? { data: new Uint8Array(got.data) } : {}) }).toEqual(e);
    });
  }
});

describe("wire format (original wasmnet compatibility)", () => {
  test("binary connect: type 0x01, u64 BE id, u16 BE port, UTF-8 addr", () => {
    expect([...encodeBinaryRequest({ op: "connect", id: 258, addr: "a.b", port: 443 })]).toEqual([
      0x01, 0, 0, 0, 0, 0, 0, 1, 2, 0x01, 0xbb, 0x61, 0x2e, 0x62,
    ]);
  });
  test("binary send_to: u16 port, u16 addr length, addr, bytes", () => {
    expect([...encodeBinaryRequest({ op: "send_to", id: 1, addr: "::1", port: 53, data: bytes(7) })]).toEqual([
      0x07, 0, 0, 0, 0, 0, 0, 0, 1, 0, 53, 0, 3, 0x3a, 0x3a, 0x31, 7,
    ]);
  });
  test("binary error payload is 'CODE: message'", () => {
    const f = encodeBinaryEvent({ ev: "error", id: 1, code: "EBADID", msg: "unknown id 1" });
    expect(f[0]).toBe(0x86);
    expect(new TextDecoder().decode(f.subarray(9))).toBe("EBADID: unknown id 1");
  });
  test("binary accepted: u64 conn_id then remote", () => {
    const f = encodeBinaryEvent({ ev: "accepted", id: 2, connId: 2 ** 32 + 5, remote: "1.2.3.4:5" });
    expect([...f.subarray(0, 17)]).toEqual([0x84, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 5]);
    expect(new TextDecoder().decode(f.subarray(17))).toBe("1.2.3.4:5");
  });
  test("binary listen backlog is optional (default 128)", () => {
    const d = decodeBinaryRequest(bytes(0x03, 0, 0, 0, 0, 0, 0, 0, 9));
    expect(d).toEqual({ ok: true, req: { op: "listen", id: 9, backlog: 128 } });
  });
  test("JSON events use the original field names", () => {
    expect(JSON.parse(encodeJsonEvent({ ev: "accepted", id: 1, connId: 9, remote: "x:1" }))).toEqual({ ev: "accepted", id: 1, conn_id: 9, remote: "x:1" });
    expect(JSON.parse(encodeJsonEvent({ ev: "error", id: 1, code: "ETLS", msg: "m" }))).toEqual({ ev: "error", id: 1, code: "ETLS", msg: "m" });
    expect(JSON.parse(encodeJsonEvent({ ev: "data", id: 3, data: bytes(104, 105) }))).toEqual({ ev: "data", id: 3, data: "aGk=" });
  });
  test("JSON listen without backlog defaults to 128", () => {
    expect(decodeJsonRequest('{"op":"listen","id":2}')).toEqual({ ok: true, req: { op: "listen", id: 2, backlog: 128 } });
  });
});
