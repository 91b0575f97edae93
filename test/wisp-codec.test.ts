// The Wisp codec: every packet type round-trips, the wire bytes match the spec (little-endian),
// interop with wisp-js's own packet classes, and malformed packets are reported, never thrown.
import { describe, expect, test } from "bun:test";
// @ts-expect-error wisp-js ships no type declarations
import { packet as wjs, extensions as wjsExt } from "@mercuryworkshop/wisp-js/client";
import {
  decodeWispExtensions,
  decodeWispKeyClient,
  decodeWispKeyServer,
  decodeWispMotd,
  decodeWispPacket,
  decodeWispPasswordClient,
  encodeWispExtensions,
  encodeWispKeyClient,
  encodeWispKeyServer,
  encodeWispMotd,
  encodeWispPacket,
  encodeWispPasswordClient,
  encodeWispPasswordServer,
  WISP_CLOSE,
  WISP_EXT,
  WISP_KEY_ALG,
  type WispPacket,
} from "../src/protocol/wisp.ts";
import { wispCloseReason as wispReason } from "../src/protocol/wisp.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

const packets: WispPacket[] = [
  { type: "connect", stream: 1, streamType: 0x01, port: 443, host: "example.com" },
  { type: "connect", stream: 0xffffffff, streamType: 0x02, port: 65535, host: "日本.example" },
  { type: "connect", stream: 7, streamType: 0x01, port: 80, host: "" },
  { type: "data", stream: 2, data: new Uint8Array([1, 2, 3, 0, 255]) },
  { type: "data", stream: 3, data: new Uint8Array(0) },
  { type: "continue", stream: 0, remaining: 128 },
  { type: "continue", stream: 9, remaining: 0xffffffff },
  { type: "close", stream: 4, reason: WISP_CLOSE.blocked },
  { type: "info", stream: 0, major: 2, minor: 0, extensions: [] },
  {
    type: "info",
    stream: 0,
    major: 2,
    minor: 1,
    extensions: [
      { id: WISP_EXT.udp, payload: new Uint8Array(0) },
      { id: WISP_EXT.motd, payload: encodeWispMotd("hello") },
      { id: WISP_EXT.streamConfirmation, payload: new Uint8Array(0) },
    ],
  },
];

describe("round trip", () => {
  for (const p of packets)
    test(`${p.type} on stream ${p.stream}`, () => {
      const d = decodeWispPacket(encodeWispPacket(p));
      expect(d.ok).toBe(true);
      if (d.ok) expect(d.packet).toEqual(p);
    });
});

describe("wire format", () => {
  test("header is u8 type + u32 LE stream id", () => {
    expect(hex(encodeWispPacket({ type: "close", stream: 0x01020304, reason: 0x02 }))).toBe("040403020102");
  });
  test("CONNECT: u8 stream type, u16 LE port, hostname", () => {
    expect(hex(encodeWispPacket({ type: "connect", stream: 1, streamType: 1, port: 0x1f90, host: "ab" }))).toBe("0101000000" + "01" + "901f" + "6162");
  });
  test("CONTINUE: u32 LE", () => {
    expect(hex(encodeWispPacket({ type: "continue", stream: 0, remaining: 128 }))).toBe("0300000000" + "80000000");
  });
  test("INFO: major, minor, extensions [u8 id][u32 LE length][payload]", () => {
    const b = encodeWispPacket({ type: "info", stream: 0, major: 2, minor: 0, extensions: [{ id: 4, payload: new Uint8Array([0x68, 0x69]) }, { id: 5, payload: new Uint8Array(0) }] });
    expect(hex(b)).toBe("0500000000" + "0200" + "04" + "02000000" + "6869" + "05" + "00000000");
  });
  test("matches wisp-js's own serializer", () => {
    const theirs = new wjs.WispPacket({
      type: wjs.packet_types.CONNECT,
      stream_id: 77,
      payload: new wjs.ConnectPayload({ stream_type: 2, port: 5353, hostname: "host.test" }),
    });
    expect(hex(theirs.serialize().bytes)).toBe(hex(encodeWispPacket({ type: "connect", stream: 77, streamType: 2, port: 5353, host: "host.test" })));
    const info = new wjs.WispPacket({
      type: wjs.packet_types.INFO,
      stream_id: 0,
      payload: new wjs.InfoPayload({
        major_ver: 2,
        minor_ver: 0,
        extensions: wjsExt.serialize_extensions([new wjsExt.UDPExtension({ client_config: {} }), new wjsExt.MOTDExtension({ server_config: { message: "m" } })]),
      }),
    });
    const d = decodeWispPacket(info.serialize().bytes);
    expect(d.ok && d.packet.type === "info" && d.packet.extensions.map((e) => [e.id, decodeWispMotd(e.payload)])).toEqual([
      [1, ""],
      [4, "m"],
    ]);
  });
  test("wisp-js parses our packets", () => {
    const b = encodeWispPacket({ type: "close", stream: 5, reason: 0x44 });
    const p = wjs.WispPacket.parse_all(new wjs.WispBuffer(b));
    expect([p.type, p.stream_id, p.payload.reason]).toEqual([4, 5, 0x44]);
  });
});

describe("extension payloads", () => {
  test("password auth, client side", () => {
    const b = encodeWispPasswordClient("user", "pässword");
    expect(hex(b.subarray(0, 3))).toBe("04" + "0900");
    expect(decodeWispPasswordClient(b)).toEqual({ user: "user", password: "pässword" });
    expect(decodeWispPasswordClient(b.subarray(0, b.length - 1))).toBeNull();
    expect(decodeWispPasswordClient(new Uint8Array([1]))).toBeNull();
    expect(() => encodeWispPasswordClient("x".repeat(256), "")).toThrow();
  });
  test("password auth, server side and wisp-js's parser", () => {
    expect([...encodeWispPasswordServer(true)]).toEqual([1]);
    const theirs = new wjsExt.PasswordAuthExtension({ client_config: { username: "u", password: "pw" } });
    const ext = decodeWispExtensions(theirs.serialize().bytes)!;
    expect(ext[0]!.id).toBe(WISP_EXT.passwordAuth);
    expect(decodeWispPasswordClient(ext[0]!.payload)).toEqual({ user: "u", password: "pw" });
  });
  test("key auth, server side: [u8 required][u8 algorithms][challenge]", () => {
    const challenge = Uint8Array.from({ length: 64 }, (_, i) => i);
    const b = encodeWispKeyServer({ required: true, algorithms: WISP_KEY_ALG.ed25519, challenge });
    expect(hex(b.subarray(0, 4))).toBe("01010001");
    expect(b.length).toBe(66);
    expect(decodeWispKeyServer(b)).toEqual({ required: true, algorithms: 1, challenge });
    expect(decodeWispKeyServer(encodeWispKeyServer({ required: false, algorithms: 1, challenge: new Uint8Array(0) }))).toEqual({ required: false, algorithms: 1, challenge: new Uint8Array(0) });
    expect(decodeWispKeyServer(new Uint8Array([1]))).toBeNull();
  });
  test("key auth, client side: [u8 algorithm][32-byte SHA-256 of the key][signature]", () => {
    const keyHash = new Uint8Array(32).fill(0xab);
    const signature = new Uint8Array(64).fill(0xcd);
    const b = encodeWispKeyClient({ algorithm: WISP_KEY_ALG.ed25519, keyHash, signature });
    expect(b.length).toBe(97);
    expect(hex(b.subarray(0, 2))).toBe("01ab");
    expect(hex(b.subarray(33, 34))).toBe("cd");
    expect(decodeWispKeyClient(b)).toEqual({ algorithm: 1, keyHash, signature });
    // Too short to hold a hash and any signature: unreadable, never a partial answer.
    expect(decodeWispKeyClient(b.subarray(0, 33))).toBeNull();
    expect(decodeWispKeyClient(new Uint8Array(0))).toBeNull();
    expect(() => encodeWispKeyClient({ algorithm: 1, keyHash: new Uint8Array(31), signature })).toThrow();
  });
  test("extension list round trip and truncation", () => {
    const list = [
      { id: 1, payload: new Uint8Array(0) },
      { id: 0xfe, payload: new Uint8Array([9, 9, 9]) },
    ];
    const b = encodeWispExtensions(list);
    expect(decodeWispExtensions(b)).toEqual(list);
    expect(decodeWispExtensions(b.subarray(0, b.length - 1))).toBeNull();
    expect(decodeWispExtensions(new Uint8Array([1, 0, 0]))).toBeNull();
    expect(decodeWispExtensions(new Uint8Array(0))).toEqual([]);
  });
});

describe("malformed packets", () => {
  const bad: [string, number[], number | null][] = [
    ["empty", [], null],
    ["short header", [2, 1, 0, 0], null],
    ["unknown type 0x00", [0, 5, 0, 0, 0], 5],
    ["unknown type 0x06", [6, 5, 0, 0, 0, 1], 5],
    ["unknown type 0xff", [0xff, 1, 0, 0, 0], 1],
    ["CONNECT without payload", [1, 1, 0, 0, 0], 1],
    ["CONNECT with 2-byte payload", [1, 1, 0, 0, 0, 1, 80], 1],
    ["CONNECT with invalid UTF-8", [1, 3, 0, 0, 0, 1, 80, 0, 0xff, 0xfe], 3],
    ["CONTINUE with 3 bytes", [3, 2, 0, 0, 0, 1, 0, 0], 2],
    ["CLOSE without reason", [4, 2, 0, 0, 0], 2],
    ["INFO with 1 byte", [5, 0, 0, 0, 0, 2], 0],
    ["INFO with truncated extension header", [5, 0, 0, 0, 0, 2, 0, 1, 0], 0],
    ["INFO with extension longer than packet", [5, 0, 0, 0, 0, 2, 0, 1, 9, 0, 0, 0, 1], 0],
  ];
  for (const [name, bytes, stream] of bad)
    test(name, () => {
      const d = decodeWispPacket(new Uint8Array(bytes));
      expect(d.ok).toBe(false);
      if (!d.ok) {
        expect(d.stream).toBe(stream);
        expect(d.msg.length).toBeGreaterThan(0);
      }
    });

  test("a header-only DATA is a valid empty DATA", () => {
    const d = decodeWispPacket(new Uint8Array([2, 1, 0, 0, 0]));
    expect(d.ok && d.packet).toEqual({ type: "data", stream: 1, data: new Uint8Array(0) });
  });

  test("DATA payload is a view, not a copy", () => {
    const buf = new Uint8Array([2, 1, 0, 0, 0, 42]);
    const d = decodeWispPacket(buf);
    expect(d.ok && d.packet.type === "data" && d.packet.data.buffer).toBe(buf.buffer);
  });

  test("packets of every length and type never throw", () => {
    for (let type = 0; type < 8; type++)
      for (let len = 0; len < 16; len++) {
        const b = new Uint8Array(len).fill(0xee);
        if (len > 0) b[0] = type;
        expect(() => decodeWispPacket(b)).not.toThrow();
      }
  });
});

test("error codes map to Wisp close reasons", () => {
  expect(wispReason("ECONNREFUSED")).toBe(0x44);
  expect(wispReason("ETIMEDOUT")).toBe(0x43);
  expect(wispReason("EHOSTUNREACH")).toBe(0x42);
  expect(wispReason("ENOTFOUND")).toBe(0x42);
  expect(wispReason("ELIMIT")).toBe(0x49);
  expect(wispReason("EBADREQ")).toBe(0x41);
  expect(wispReason("EBADID")).toBe(0x41);
  expect(wispReason("EIDINUSE")).toBe(0x41);
  expect(wispReason("ETLS")).toBe(0x03);
  expect(wispReason("EINTERNAL")).toBe(0x03);
});
