// UploadWindow (adapters/base.ts): the one pump that keeps at most a window of a stream's bytes
// with the session and holds the rest, in order; withdraw takes back the newest held bytes.
import { describe, expect, test } from "bun:test";
import { UploadWindow } from "../src/adapters/base.ts";

function pump(window: number) {
  const forwarded: number[][] = [];
  const w = new UploadWindow(window, (chunk) => void forwarded.push([...chunk]));
  return { w, forwarded, flat: () => forwarded.flat() };
}
const bytes = (from: number, n: number) => Uint8Array.from({ length: n }, (_, i) => from + i);

describe("UploadWindow", () => {
  test("forwards up to the window at once, holds the rest, and releases it in order as credit comes", () => {
    const { w, flat } = pump(10);
    w.offer(bytes(0, 6));
    w.offer(bytes(6, 8)); // 4 go now, 4 wait
    expect(flat()).toEqual([...bytes(0, 10)]);
    expect([w.heldBytes, w.inFlight, w.room]).toEqual([4, 14, -4]);
    w.credited(3);
    expect(flat()).toEqual([...bytes(0, 13)]);
    w.credited(10);
    expect(flat()).toEqual([...bytes(0, 14)]);
    expect([w.heldBytes, w.room]).toEqual([0, 9]);
  });

  test("withdraw takes back the newest held bytes, across and inside chunks; never what was forwarded", () => {
    const { w, flat } = pump(4);
    w.offer(bytes(0, 4)); // forwarded
    w.offer(bytes(4, 3));
    w.offer(bytes(7, 5)); // held: 4..11 (8 bytes)
    expect(w.withdraw(6)).toBe(6); // the 5-byte chunk and the last byte of the 3-byte one
    expect(w.heldBytes).toBe(2);
    expect(w.withdraw(100)).toBe(2); // only what is held
    expect(w.withdraw(1)).toBe(0);
    w.credited(4);
    expect(flat()).toEqual([...bytes(0, 4)]);
    w.offer(bytes(50, 2));
    expect(flat()).toEqual([...bytes(0, 4), 50, 51]);
  });

  test("a partial withdraw leaves the rest of the held bytes to go out in order", () => {
    const { w, flat } = pump(2);
    w.offer(bytes(0, 2));
    w.offer(bytes(2, 6)); // held 2..7
    expect(w.withdraw(2)).toBe(2); // 6, 7 taken back
    w.credited(2);
    w.credited(2);
    expect(flat()).toEqual([...bytes(0, 6)]);
    expect(w.heldBytes).toBe(0);
  });
});
