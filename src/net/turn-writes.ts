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
/** The largest staging buffer: the most a stream writes in one merged send(). */
export const STAGE_BYTES = 64 * 1024;
/**
 * The smallest: a stage starts here and doubles while the turn's chunks need more, so a turn with
 * two tiny messages holds 4 KiB, not a whole 64 KiB stage, per stream.
 */
export const STAGE_FIRST_BYTES = 4 * 1024;
/** Free staging buffers kept for reuse (warm memory), in bytes over all sizes; beyond this they are left to the GC. */
const POOL_BYTES = 64 * STAGE_BYTES;

/** What waits for the end of the turn. */
export interface TurnWriter {
  endOfTurn(): void;
}

let turn = 0;
let ending = false;
let waiting: TurnWriter[] = [];
/** Free stages by size class: pools[i] holds buffers of STAGE_FIRST_BYTES << i. */
const pools: Uint8Array[][] = [];
for (let size = STAGE_FIRST_BYTES; size <= STAGE_BYTES; size *= 2) pools.push([]);
let pooledBytes = 0;

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

/** A free stage of at least `bytes` (at most STAGE_BYTES): the smallest size class that holds them. */
export function takeStage(bytes: number): Uint8Array {
  let i = 0;
  while ((STAGE_FIRST_BYTES << i) < bytes && i < pools.length - 1) i++;
  const b = pools[i]!.pop();
  if (b === undefined) return new Uint8Array(STAGE_FIRST_BYTES << i);
  pooledBytes -= b.length;
  return b;
}

export function giveStage(b: Uint8Array): void {
  if (pooledBytes + b.length > POOL_BYTES) return;
  const i = Math.log2(b.length / STAGE_FIRST_BYTES);
  const pool = pools[i];
  if (pool === undefined) return; // not one of ours
  pool.push(b);
  pooledBytes += b.length;
}
