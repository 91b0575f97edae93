// Upload bandwidth decisions of src/session/backpressure.ts on their own: a recording Transport,
// a recording stand-in for the session's streams (only flush() is asked of them here), and a clock
// the test sets, so a message can land at an exact instant (such as the last millisecond of a pause).
import { afterEach, describe, expect, test } from "bun:test";
import type { MemoryWatch } from "../src/limits/memory-watch.ts";
import { TokenBucket } from "../src/limits/token-bucket.ts";
import type { TcpStream } from "../src/net/tcp-stream.ts";
import { Backpressure } from "../src/session/backpressure.ts";
import type { Transport } from "../src/session/transport.ts";

/** 100 000 bytes/s and no burst: every 100 bytes cost 1 ms of debt. */
const RATE = 100_000;

let open: Backpressure[] = [];
afterEach(() => {
  for (const b of open) b.close();
  open = [];
});

function setup() {
  const clock = { now: 0 };
  const log: string[] = [];
  let onResume: (() => void) | null = null;
  const transport: Transport = {
    send() {},
    buffered: () => 0,
    pauseInput: () => void log.push("pause"),
    resumeInput() {
      log.push("resume");
      onResume?.();
    },
  };
  const stream = { flush: () => void log.push("flush") } as unknown as TcpStream;
  const bp = new Backpressure(transport, [new TokenBucket(RATE, 0, 0)], { high: 1 << 20, low: 1 << 16 }, {} as MemoryWatch, () => [stream], () => clock.now);
  open.push(bp);
  /** Resolves at the next resumeInput(). */
  const resumed = () => new Promise<void>((r) => (onResume = r));
  return { bp, clock, log, resumed };
}

describe("Backpressure upload", () => {
  test("uploads within the budget are not held and do not pause the client", () => {
    const { bp, log } = setup();
    expect(bp.upload(0)).toBe(false);
    expect(log).toEqual([]);
  });

  test("a debt pauses the client once; more uploads meanwhile extend the pause without pausing again", async () => {
    const { bp, clock, log, resumed } = setup();
    const back = resumed();
    expect(bp.upload(1000)).toBe(true); // 10 ms of debt
    clock.now = 5;
    expect(bp.upload(1000)).toBe(true); // 15 ms of debt left: until t = 20
    expect(log).toEqual(["pause"]);
    clock.now = 20;
    await back;
    expect(log).toEqual(["pause", "flush", "resume"]); // held bytes are flushed before the client is read again
  });

  test("a message in the last millisecond before the deadline pauses the client again", async () => {
    const { bp, clock, log, resumed } = setup();
    let back = resumed();
    expect(bp.upload(2000)).toBe(true); // 20 ms of debt: paused until t = 20
    clock.now = 19.5; // the resume runs with half a millisecond left and reads the client again
    await back;
    expect(log).toEqual(["pause", "flush", "resume"]);

    // Bun delivers one more message before the deadline: the budget is still in debt, so it is
    // held, and the client must be paused again with a resume on its way (before the fix, it was
    // held with no pause and no resume, and from then on never paused again while every write
    // was held past stream_buffer_bytes).
    clock.now = 19.7;
    back = resumed();
    expect(bp.upload(100)).toBe(true);
    expect(log).toEqual(["pause", "flush", "resume", "pause"]);
    clock.now = 100;
    await back;
    expect(log).toEqual(["pause", "flush", "resume", "pause", "flush", "resume"]);
  });

  test("a closed session never resumes its client", async () => {
    const { bp, clock, log } = setup();
    expect(bp.upload(100)).toBe(true); // 1 ms
    bp.close();
    clock.now = 50;
    // The resume timer is due after 1 ms; give it a few turns, it must do nothing.
    await new Promise((r) => setTimeout(r, 20));
    expect(log).toEqual(["pause"]);
  });
});
