// Small writes toward targets, one send() per loop turn instead of one per message.
//
// Bun hands every WebSocket message of one read to its own callback and drains microtasks after
// each, so a client that sends many small messages would cost one send() per message — most of
// the CPU of a relay at 1–4 KiB per message. A stream writes the first small chunk of a loop turn
// at once (an interactive message waits for nothing); the small chunks after it in the same turn
// are copied into a staging buffer and go out as one write when the turn ends (setImmediate), or
// as soon as the buffer is full. Large chunks are written as they come: merging them costs a copy
// for little and would delay their flow-control credit.
//
// The chunks are copied into the stage rather than kept: Bun's message buffers then die at once,
// where keeping hundreds of them until the end of the turn made the allocator hand out fresh
// (page-faulting) memory for the next ones, which cost more than the send() calls saved.

/** A chunk smaller than this is batched; one this large or larger is written at once. */
export const SMALL_WRITE = 16 * 1024;
/** One staging buffer: the most a stream writes in one merged send(). */
export const STAGE_BYTES = 64 * 1024;
/** Free staging buffers kept for reuse (warm memory); beyond this they are left to the GC. */
const POOL_MAX = 64;

/** What waits for the end of the turn. */
export interface TurnWriter {
  endOfTurn(): void;
}

let turn = 0;
let ending = false;
let waiting: TurnWriter[] = [];
const pool: Uint8Array[] = [];

function endTurn(): void {
  ending = false;
  turn++;
  const due = waiting;
  waiting = [];
  for (const w of due) w.endOfTurn();
}

/**
 * The current turn. It only advances in turns in which something wrote (see noteWrite), so an
 * idle server schedules nothing.
 */
export function currentTurn(): number {
  return turn;
}

/** A small chunk was written in this turn: the turn must end before the next one counts as new. */
export function noteWrite(): void {
  if (ending) return;
  ending = true;
  setImmediate(endTurn);
}

/** Call `w.endOfTurn()` when this turn ends (once per registration). */
export function atTurnEnd(w: TurnWriter): void {
  waiting.push(w);
  noteWrite();
}

export function takeStage(): Uint8Array {
  return pool.pop() ?? new Uint8Array(STAGE_BYTES);
}

export function giveStage(b: Uint8Array): void {
  if (pool.length < POOL_MAX) pool.push(b);
}
