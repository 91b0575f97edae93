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

  test("small chunks share staging buffers: 100,000 one-byte offers are a handful of held chunks, in order", () => {
    const { w, flat } = pump(1000);
    const n = 100_000;
    for (let i = 0; i < n; i++) w.offer(Uint8Array.of(i & 0xff));
    expect(w.heldBytes).toBe(n - 1000);
    expect(w.heldChunks).toBeLessThanOrEqual(Math.ceil(n / 16384) + 1);
    // Withdraw works across the shared buffers; what is left goes out in order.
    expect(w.withdraw(20_000)).toBe(20_000);
    for (let credited = 0; credited < n; credited += 1000) w.credited(1000);
    expect(flat()).toEqual(Array.from({ length: n - 20_000 }, (_, i) => i & 0xff));
  });

  test("bytes handed on are never overwritten by small chunks copied in after them", () => {
    const kept: Uint8Array[] = []; // the session may keep the very views it was given
    const w = new UploadWindow(4, (chunk) => void kept.push(chunk));
    w.offer(bytes(0, 4));
    for (let i = 4; i < 8; i++) w.offer(Uint8Array.of(i)); // held, in one staging buffer
    w.credited(2); // 4, 5 handed on: a view of the staging buffer
    for (let i = 8; i < 12; i++) w.offer(Uint8Array.of(i));
    expect(w.withdraw(1)).toBe(1); // 11 taken back
    w.offer(Uint8Array.of(99));
    for (let i = 0; i < 6; i++) w.credited(2);
    expect(kept.flatMap((c) => [...c])).toEqual([...bytes(0, 11), 99]);
  });
});
