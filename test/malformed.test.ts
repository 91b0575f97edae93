// Hostile and malformed input through a real server: every case gets a clear `error` on the
// right id, and the same session keeps working afterwards (docs/protocol.md#malformed-messages).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { TestClient } from "./helpers/client.ts";
import { startServer } from "./helpers/server.ts";
import { echoServer } from "./helpers/targets.ts";
import { encodeBinaryRequest } from "../src/protocol/binary.ts";

let srv: Awaited<ReturnType<typeof startServer>>;
const echo = echoServer();
beforeAll(async () => {
  srv = await startServer({ noPolicy: true, policy: undefined });
});
afterAll(async () => {
  await srv.stop();
  echo.stop();
});

const hdr = (type: number, id: number) => {
  const b = new Uint8Array(9);
  b[0] = type;
  new DataView(b.buffer).setBigUint64(1, BigInt(id));
  return b;
};
const frame = (type: number, id: number, ...payload: number[]) => new Uint8Array([...hdr(type, id), ...payload]);
const u64max = new Uint8Array([0x04, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1]);

/** [name, raw message, expected error id, expected code] */
const cases: [string, string | Uint8Array, number, string][] = [
  ["invalid JSON", "{not json", 0, "EBADREQ"],
  ["JSON array", "[1,2]", 0, "EBADREQ"],
  ["JSON string", '"connect"', 0, "EBADREQ"],
  ["JSON null", "null", 0, "EBADREQ"],
  ["empty text frame", "", 0, "EBADREQ"],
  ["missing op", '{"id":5}', 5, "EBADREQ"],
  ["op not a string", '{"op":1,"id":5}', 5, "EBADREQ"],
  ["unknown op", '{"op":"explode","id":6}', 6, "EBADREQ"],
  ["missing id", '{"op":"connect","addr":"127.0.0.1","port":80}', 0, "EBADREQ"],
  ["negative id", '{"op":"close","id":-1}', 0, "EBADREQ"],
  ["fractional id", '{"op":"close","id":1.5}', 0, "EBADREQ"],
  ["id over 2^53", '{"op":"close","id":9007199254740993}', 0, "EBADREQ"],
  ["id zero", '{"op":"close","id":0}', 0, "EBADREQ"],
  ["string id", '{"op":"close","id":"1"}', 0, "EBADREQ"],
  ["missing addr", '{"op":"connect","id":7,"port":80}', 7, "EBADREQ"],
  ["addr not a string", '{"op":"connect","id":7,"addr":5,"port":80}', 7, "EBADREQ"],
  ["empty addr", '{"op":"connect","id":7,"addr":"","port":80}', 7, "EBADREQ"],
  ["addr with a space", '{"op":"connect","id":7,"addr":"a b","port":80}', 7, "EBADREQ"],
  ["addr too long", JSON.stringify({ op: "connect", id: 7, addr: "a".repeat(400), port: 80 }), 7, "EBADREQ"],
  ["port 0", '{"op":"connect","id":8,"addr":"127.0.0.1","port":0}', 8, "EBADREQ"],
  ["port 65536", '{"op":"connect","id":8,"addr":"127.0.0.1","port":65536}', 8, "EBADREQ"],
  ['port "80"', '{"op":"connect","id":8,"addr":"127.0.0.1","port":"80"}', 8, "EBADREQ"],
  ["negative port", '{"op":"connect","id":8,"addr":"127.0.0.1","port":-80}', 8, "EBADREQ"],
  ["send without data", '{"op":"send","id":9}', 9, "EBADREQ"],
  ["send with bad base64", '{"op":"send","id":9,"data":"!!!"}', 9, "EBADREQ"],
  ["send_to without port", '{"op":"send_to","id":9,"addr":"127.0.0.1","data":""}', 9, "EBADREQ"],
  ["resolve without name", '{"op":"resolve","id":9}', 9, "EBADREQ"],
  ["listen with bad backlog", '{"op":"listen","id":9,"backlog":"lots"}', 9, "EBADREQ"],
  ["close of an unknown id", '{"op":"close","id":424242}', 424242, "EBADID"],
  ["send to an unknown id", '{"op":"send","id":424243,"data":"AA=="}', 424243, "EBADID"],
  ["hello not first", '{"op":"hello","version":2,"features":[]}', 0, "EBADREQ"],
  ["empty binary frame", new Uint8Array(0), 0, "EBADREQ"],
  ["truncated header", new Uint8Array([0x01, 0, 0, 0]), 0, "EBADREQ"],
  ["binary id over 2^53", u64max, 0, "EBADREQ"],
  ["binary id 0", frame(0x05, 0), 0, "EBADREQ"],
  ["unknown binary type", frame(0x42, 11), 11, "EBADREQ"],
  ["event type sent as request", frame(0x81, 11), 11, "EBADREQ"],
  ["binary connect without port", frame(0x01, 12, 1), 12, "EBADREQ"],
  ["binary connect without addr", frame(0x01, 12, 0, 80), 12, "EBADREQ"],
  ["binary connect port 0", new Uint8Array([...frame(0x01, 12, 0, 0), 0x61]), 12, "EBADREQ"],
  ["binary addr invalid UTF-8", frame(0x01, 12, 0, 80, 0xff, 0xfe), 12, "EBADREQ"],
  ["binary send_to addr length past end", frame(0x07, 13, 0, 53, 0, 50, 0x31), 13, "EBADREQ"],
  ["binary send_to too short", frame(0x07, 13, 0), 13, "EBADREQ"],
  ["binary listen with 2-byte payload", frame(0x03, 14, 0, 1), 14, "EBADREQ"],
  ["binary hello with bad JSON", frame(0x0a, 0, 0x7b), 0, "EBADREQ"],
  ["binary send to unknown id", frame(0x04, 15, 1, 2, 3), 15, "EBADID"],
];

describe("malformed input", () => {
  test(`${cases.length} malformed messages each get an error, and the session survives`, async () => {
    const c = await TestClient.open(srv.wsUrl);
    // Start with one valid request so a later hello is "not first".
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    for (const [name, raw, id, code] of cases) {
      c.raw(raw);
      const e = await c.wait((e) => e.ev === "error" && e.id === id, 5000, name);
      expect({ name, code: e.ev === "error" ? (e.code as string) : e.ev }).toEqual({ name, code });
      expect(e.ev === "error" && e.msg.length > 5).toBe(true);
    }
    // Still alive: the stream opened before the barrage echoes, and a new one opens.
    c.framing = "json";
    c.send({ op: "send", id: 1, data: new TextEncoder().encode("still here") });
    await c.waitBytes(1, 10);
    expect((await c.connect(2, "127.0.0.1", echo.port)).ev).toBe("connected");
    expect(c.closed).toBe(false);
    c.close();
  });

  test("a reused id is EIDINUSE and the first stream is unharmed", async () => {
    const c = await TestClient.open(srv.wsUrl, "binary");
    expect((await c.connect(5, "127.0.0.1", echo.port)).ev).toBe("connected");
    c.send({ op: "connect", id: 5, addr: "127.0.0.1", port: echo.port });
    const e = await c.next(5);
    expect(e.ev === "error" && e.code).toBe("EIDINUSE");
    c.send({ op: "send", id: 5, data: new Uint8Array([1]) });
    await c.waitBytes(5, 1);
    c.close();
  });

  test("one session cannot touch another's ids", async () => {
    const a = await TestClient.open(srv.wsUrl);
    const b = await TestClient.open(srv.wsUrl);
    expect((await a.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    b.send({ op: "send", id: 1, data: new Uint8Array([1]) });
    const e = await b.next(1);
    expect(e.ev === "error" && e.code).toBe("EBADID");
    b.send({ op: "close", id: 1 });
    expect(((await b.next(1)) as { code: string }).code).toBe("EBADID");
    a.send({ op: "send", id: 1, data: new Uint8Array([7]) });
    await a.waitBytes(1, 1);
    a.close();
    b.close();
  });

  test("a message over max_message_bytes is ELIMIT on its id; the session goes on", async () => {
    const c = await TestClient.open(srv.wsUrl, "binary");
    expect((await c.connect(3, "127.0.0.1", echo.port)).ev).toBe("connected");
    expect((await c.connect(4, "127.0.0.1", echo.port)).ev).toBe("connected");
    c.raw(encodeBinaryRequest({ op: "send", id: 3, data: new Uint8Array(1024 * 1024 + 1) }));
    const e = await c.next(3);
    expect(e.ev === "error" && e.code).toBe("ELIMIT");
    c.send({ op: "send", id: 4, data: new Uint8Array([1, 2]) });
    await c.waitBytes(4, 2);
    c.close();
  });
});
