// TcpStream on its own (src/net/tcp-stream.ts): a recording owner in place of the session, real
// targets on 127.0.0.1. What the stream owns — state, queue, credit, pauses, timers, half-close
// — is checked through its methods and what it tells its owner.
import { afterAll, describe, expect, test } from "bun:test";
import { pass, type Cleared } from "../src/net/gate.ts";
import { PAUSE, TcpStream, type StreamOutcome, type StreamOwner } from "../src/net/tcp-stream.ts";
import { unrestrictedPolicy } from "../src/policy/load.ts";
import { echoServer, freePort, sinkServer, sourceServer } from "./helpers/targets.ts";
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
