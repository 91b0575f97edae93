// TcpStream on its own (src/net/tcp-stream.ts): a recording owner in place of the session, real
// targets on 127.0.0.1. What the stream owns — state, queue, credit, pauses, timers, half-close
// — is checked through its methods and what it tells its owner.
import { afterAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { pass, type Cleared } from "../src/net/gate.ts";
import { PAUSE, TcpStream, type StreamOutcome, type StreamOwner } from "../src/net/tcp-stream.ts";
import { STAGE_FIRST_BYTES } from "../src/net/turn-writes.ts";
import { unrestrictedPolicy } from "../src/policy/load.ts";
import { echoServer, freePort, makePayload, sha256, sinkServer, sourceServer } from "./helpers/targets.ts";
import { waitFor, waitForSteady } from "./helpers/wait.ts";

class Owner implements StreamOwner {
  opens = 0;
  data: Uint8Array[] = [];
  credited = 0;
  fins = 0;
  outcome: StreamOutcome | null = null;
  constructor(
    readonly flow = false,
    readonly window = 1 << 20,
    readonly streamBufferBytes = 1 << 20,
  ) {}
  opened() {
    this.opens++;
  }
  received(_s: TcpStream, d: Uint8Array) {
    this.data.push(d);
  }
  credit(_s: TcpStream, n: number) {
    this.credited += n;
  }
  remoteEnded() {
    this.fins++;
  }
  ended(_s: TcpStream, o: StreamOutcome) {
    if (this.outcome) throw new Error("ended twice");
    this.outcome = o;
  }
  get bytes() {
    return this.data.reduce((n, d) => n + d.length, 0);
  }
  text() {
    return Buffer.concat(this.data).toString();
  }
}

const gate = { rules: unrestrictedPolicy().rules, bind: unrestrictedPolicy(), resolver: async () => [], dnsTimeoutMs: 1000 };
function cleared(port: number, host = "127.0.0.1"): Cleared {
  const v = pass(gate, { op: "connect", host, port });
  if (v instanceof Promise || !v.ok) throw new Error("literal must clear at once");
  return v.value;
}
function stream(owner: Owner, port: number): TcpStream {
  return new TcpStream(owner, 1, "tcp", { name: null, addr: "127.0.0.1", port, rule: "" });
}

const echo = echoServer();
afterAll(() => echo.stop());

describe("TcpStream", () => {
  test("bytes written before the connection is up are queued, then flushed in order; the target's answer is received", async () => {
    const o = new Owner();
    const s = stream(o, echo.port);
    expect(s.write(new TextEncoder().encode("early "))).toBeNull();
    s.dial(cleared(echo.port), null, false);
    expect(s.write(new TextEncoder().encode("bytes"))).toBeNull();
    await waitFor(() => o.text() === "early bytes", { what: "the echo", detail: () => o.text() });
    expect([o.opens, s.state, s.up, s.down]).toEqual([1, "open", 11, 11]);
    s.finish("test over");
    expect(o.outcome).toEqual({ kind: "closed", reason: "test over" });
  });

  test("flow control: credit adds up to what the target took; overspending the window is refused", async () => {
    const o = new Owner(true, 64 * 1024);
    const s = stream(o, echo.port);
    s.dial(cleared(echo.port), null, false);
    await waitFor(() => s.isOpen, "open");
    expect(s.write(new Uint8Array(40 * 1024))).toBeNull();
    await waitFor(() => o.credited === 40 * 1024, { what: "credit for 40 KiB", detail: () => o.credited });
    expect(s.write(new Uint8Array(64 * 1024))).toBeNull(); // the whole window again: credited back
    await waitFor(() => o.credited === 104 * 1024, "credit for the second write");
    s.hold(PAUSE.consumer); // stop reading the echo so nothing more is credited meanwhile
    expect(s.write(new Uint8Array(64 * 1024 + 1))).toContain("exceeds the flow-control window");
    s.finish("done");
  });

  test("version 1: a target that stops reading makes a write over stream_buffer_bytes a problem", async () => {
    const sink = sinkServer({ paused: true });
    const o = new Owner(false, 0, 256 * 1024);
    const s = stream(o, sink.port);
    s.dial(cleared(sink.port), null, false);
    await waitFor(() => s.isOpen, "open");
    let problem: string | null = null;
    for (let i = 0; i < 1000 && problem === null; i++) problem = s.write(new Uint8Array(64 * 1024));
    expect(problem).toContain("stream_buffer_bytes (262144)");
    s.finish("done");
    sink.stop();
  });

  test("hold/release: a held stream stops reading its target until every reason is released", async () => {
    const src = sourceServer(8 * 1024 * 1024);
    const o = new Owner();
    const s = stream(o, src.port);
    s.hold(PAUSE.clientFull); // held before it even opens: adopt() pauses the socket at once
    s.hold(PAUSE.bandwidth);
    s.dial(cleared(src.port), null, false);
    await waitFor(() => s.isOpen, "open");
    // Nothing to await here: the point is that nothing (beyond one read) arrives while held.
    const held = await waitForSteady(() => o.bytes, { what: "a held stream to stay still", quietMs: 300 });
    expect(held).toBeLessThan(1024 * 1024);
    s.release(PAUSE.clientFull);
    expect(s.isHeld(PAUSE.bandwidth)).toBe(true);
    expect(await waitForSteady(() => o.bytes, { what: "still held for bandwidth", quietMs: 300 })).toBeLessThan(1024 * 1024);
    s.release(PAUSE.bandwidth);
    await waitFor(() => o.outcome !== null, { what: "all 8 MiB and the target's close", detail: () => o.bytes });
    expect(o.bytes).toBe(8 * 1024 * 1024);
    src.stop();
  });

  test("shutdown sends FIN once the queue is written; the target's FIN is reported", async () => {
    const sink = sinkServer();
    const o = new Owner();
    const s = stream(o, sink.port);
    s.write(new Uint8Array(1000));
    s.shutdown();
    expect(s.localFin).toBe(true);
    s.dial(cleared(sink.port), null, true);
    await waitFor(() => sink.eofs === 1, "the target to see FIN");
    expect(sink.received).toBe(1000);
    for (const t of sink.sockets) t.end();
    await waitFor(() => o.outcome !== null, "the stream to end after both FINs");
    expect(o.fins).toBe(1);
    sink.stop();
  });

  test("ends are reported once, with what happened", async () => {
    const refused = new Owner();
    const a = stream(refused, freePort());
    a.dial(cleared(a.target.port), null, false);
    await waitFor(() => refused.outcome !== null, "the refused connect");
    expect(refused.outcome).toMatchObject({ kind: "error", code: "ECONNREFUSED" });

    const slow = new Owner();
    const b = stream(slow, echo.port);
    b.armConnectTimeout(20, "connect"); // never dialled: the timer is all there is
    await waitFor(() => slow.outcome !== null, "the connect timeout");
    expect(slow.outcome).toMatchObject({ kind: "error", code: "ETIMEDOUT" });
    b.fail("EINTERNAL", "late"); // already ended: nothing more

    const denied = new Owner();
    const c = stream(denied, 80);
    c.refuse({ allowed: false, code: "deny", rule: "nonpublic", reason: "loopback" });
    expect(denied.outcome).toMatchObject({ kind: "denied", refusal: { rule: "nonpublic" } });
    expect(c.state).toBe("closed");
  });

  test("idleMs counts from the last byte either way", async () => {
    const o = new Owner();
    const s = stream(o, echo.port);
    s.dial(cleared(echo.port), null, false);
    await waitFor(() => s.isOpen, "open");
    expect(s.idleMs(1000)).toBe(0);
    expect(s.idleMs(1500)).toBe(500);
    s.write(new Uint8Array([1]));
    expect(s.idleMs(1600)).toBe(0);
    s.finish("done");
  });
});

/** Records every byte it receives, in order; optionally does not read until resume(). */
function recordingServer(paused = false) {
  const chunks: Uint8Array[] = [];
  const sockets = new Set<Socket<undefined>>();
  let eofs = 0;
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        sockets.add(s);
        if (paused) s.pause();
      },
      data(_s, d) {
        chunks.push(d);
      },
      end() {
        eofs++;
      },
      error() {},
    },
  });
  return {
    port: listener.port,
    get bytes() {
      return chunks.reduce((n, c) => n + c.length, 0);
    },
    get eofs() {
      return eofs;
    },
    content: () => Buffer.concat(chunks),
    resume: () => {
      for (const s of sockets) s.resume();
    },
    stop: () => listener.stop(true),
  };
}

/** Counts the socket writes of an open stream (its socket is private: reached for here only). */
function countWrites(s: TcpStream): { n: number } {
  const socket = (s as unknown as { socket: { write(d: Uint8Array): number } }).socket;
  const count = { n: 0 };
  const write = socket.write.bind(socket);
  socket.write = (d: Uint8Array) => {
    count.n++;
    return write(d);
  };
  return count;
}

/** Resolves in the next loop turn (after this turn's setImmediate callbacks). */
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

describe("small writes of one loop turn (src/net/turn-writes.ts)", () => {
  test("the first goes out at once, the ones after it together at the turn's end, in order", async () => {
    const o = new Owner();
    const s = stream(o, echo.port);
    s.dial(cleared(echo.port), null, false);
    await waitFor(() => s.isOpen, "open");
    await nextTurn();
    const writes = countWrites(s);
    const payload = makePayload(200 * 100);
    for (let i = 0; i < 200; i++) expect(s.write(payload.subarray(i * 100, (i + 1) * 100))).toBeNull();
    expect(writes.n).toBe(1); // the first chunk only; 199 wait for the end of this turn
    await waitFor(() => o.bytes === payload.length, { what: "the echo of 200 chunks", detail: () => o.bytes });
    expect(writes.n).toBe(2);
    expect(sha256(Buffer.concat(o.data))).toBe(sha256(payload));
    expect(s.up).toBe(payload.length);
    await nextTurn();
    s.write(new Uint8Array(10)); // a new turn: an interactive message waits for nothing
    expect(writes.n).toBe(3);
    s.finish("done");
  });

  test("a turn's stage starts small and grows while its chunks need more", async () => {
    const o = new Owner();
    const s = stream(o, echo.port);
    s.dial(cleared(echo.port), null, false);
    await waitFor(() => s.isOpen, "open");
    await nextTurn();
    const stage = () => (s as unknown as { stage: Uint8Array | null }).stage; // private: reached for here only
    const payload = makePayload(3 + 10 + 6000 + 12_000, 4);
    s.write(payload.subarray(0, 3)); // out at once
    s.write(payload.subarray(3, 13)); // the turn's second tiny message: a small stage, not a whole STAGE_BYTES one
    expect(stage()!.length).toBe(STAGE_FIRST_BYTES);
    s.write(payload.subarray(13, 6013));
    expect(stage()!.length).toBe(2 * STAGE_FIRST_BYTES);
    s.write(payload.subarray(6013));
    expect(stage()!.length).toBeGreaterThanOrEqual(6010 + 12_000);
    await waitFor(() => o.bytes === payload.length, { what: "the echo", detail: () => o.bytes });
    expect(sha256(Buffer.concat(o.data))).toBe(sha256(payload));
    s.finish("done");
  });

  test("staged bytes go before a large chunk, a shutdown and a close", async () => {
    const payload = makePayload(200 * 1024, 7);
    const parts = [100, 2000, 50, 40 * 1024, 300, 1, 1000]; // a large chunk in the middle
    for (const end of ["shutdown", "close"] as const) {
      const target = recordingServer();
      const s = stream(new Owner(), target.port);
      s.dial(cleared(target.port), null, true);
      await waitFor(() => s.isOpen, "open");
      await nextTurn();
      let off = 0;
      for (const n of parts) {
        s.write(payload.subarray(off, off + n));
        off += n;
      }
      if (end === "shutdown") s.shutdown();
      else s.closeByClient();
      await waitFor(() => target.eofs === 1, { what: `the target's FIN after ${end}`, detail: () => target.bytes });
      expect(sha256(target.content())).toBe(sha256(payload.subarray(0, off)));
      s.finish("done");
      target.stop();
    }
  });

  test("a target that stops reading: what it does not take waits for its drain, in order", async () => {
    const target = recordingServer(true);
    const o = new Owner(false, 0, 64 * 1024 * 1024);
    const s = stream(o, target.port);
    s.dial(cleared(target.port), null, false);
    await waitFor(() => s.isOpen, "open");
    const payload = makePayload(16 * 1024 * 1024, 3); // far more than loopback buffers hold
    const CHUNK = 1024;
    for (let off = 0; off < payload.length; ) {
      for (let k = 0; k < 256 && off < payload.length; k++, off += CHUNK) expect(s.write(payload.subarray(off, off + CHUNK))).toBeNull();
      await nextTurn();
    }
    target.resume();
    await waitFor(() => target.bytes === payload.length, { what: "all 16 MiB after the target reads again", detail: () => target.bytes, timeoutMs: 30_000 });
    expect(sha256(target.content())).toBe(sha256(payload));
    s.finish("done");
    target.stop();
  });

  test("many tiny writes queued behind a target that stops reading are coalesced, and arrive intact and in order", async () => {
    const target = recordingServer(true);
    const o = new Owner(false, 0, 64 * 1024 * 1024);
    const s = stream(o, target.port);
    s.dial(cleared(target.port), null, false);
    await waitFor(() => s.isOpen, "open");
    const queue = () => (s as unknown as { queue: Uint8Array[] | null }).queue; // private: reached for here only
    // Fill the loopback buffers so that everything after waits in the queue.
    const fill = makePayload(16 * 1024 * 1024, 5);
    let off = 0;
    for (; queue() === null && off < fill.length; off += 64 * 1024) expect(s.write(fill.subarray(off, off + 64 * 1024))).toBeNull();
    expect(queue()).not.toBeNull();
    // Then 100 000 one-byte writes, each in its own buffer as a client message would be, with a
    // few larger chunks among them (kept as they are, between the coalesced runs).
    const tiny = makePayload(100_000, 9);
    const sent: Uint8Array[] = [fill.subarray(0, off)];
    for (let i = 0; i < tiny.length; i++) {
      const one = new Uint8Array([tiny[i]!]);
      expect(s.write(one)).toBeNull();
      sent.push(one);
      if (i % 25_000 === 12_345) {
        const big = makePayload(20 * 1024, i);
        expect(s.write(big)).toBeNull();
        sent.push(big);
      }
      if (i % 1000 === 999) await nextTurn();
    }
    // One queue entry per 1-byte write would be 100 000 entries (each keeping its buffer alive).
    expect(queue()!.length).toBeLessThan(100);
    target.resume();
    const expected = Buffer.concat(sent);
    await waitFor(() => target.bytes === expected.length, { what: "every byte after the target reads again", detail: () => target.bytes, timeoutMs: 30_000 });
    expect(sha256(target.content())).toBe(sha256(expected));
    s.finish("done");
    target.stop();
  });
});
