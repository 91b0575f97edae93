// The one way tests wait for something: poll an observable condition (a counter, a set's size,
// bytes received, a log line) until it holds, or fail with an error that names what was awaited.
// A fixed sleep is only right where the point is "nothing happens within X".

/** How long a wait lasts by default: generous, because the test machine may be loaded. */
export const DEFAULT_WAIT_MS = 10_000;

export interface WaitOptions {
  /** What is being awaited, in words: it is the timeout error's message. */
  what: string;
  /** Give up after this long (default DEFAULT_WAIT_MS). */
  timeoutMs?: number;
  /** Poll interval (default 5 ms). */
  intervalMs?: number;
  /** Extra state to put in the timeout error, e.g. how many bytes did arrive. */
  detail?: () => unknown;
  /** Checked after each unmet poll: a string means waiting is pointless (e.g. the socket closed); it is thrown. */
  failIf?: () => string | false | null | undefined;
}

/** The error a wait throws when its condition did not hold in time. */
export class WaitTimeout extends Error {
  override name = "WaitTimeout";
}

function detailOf(opts: WaitOptions): string {
  if (!opts.detail) return "";
  const d = opts.detail();
  return ` (${typeof d === "string" ? d : JSON.stringify(d)})`;
}

/**
 * Resolves once `predicate()` (sync or async) is truthy; throws a WaitTimeout naming
 * `opts.what` if it is not within the timeout. `opts` may be just the description.
 */
export async function waitFor(predicate: () => unknown, opts: WaitOptions | string): Promise<void> {
  const o = typeof opts === "string" ? { what: opts } : opts;
  const timeoutMs = o.timeoutMs ?? DEFAULT_WAIT_MS;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    const stop = o.failIf?.();
    if (stop) throw new Error(`gave up waiting for ${o.what}: ${stop}${detailOf(o)}`);
    if (Date.now() >= deadline) throw new WaitTimeout(`timed out after ${timeoutMs} ms waiting for ${o.what}${detailOf(o)}`);
    await Bun.sleep(o.intervalMs ?? 5);
  }
}

/**
 * Runs `check` (which throws, e.g. an `expect`) until it passes; rethrows its last failure,
 * prefixed with `what`, once the timeout is up. For conditions best written as assertions.
 */
export async function eventually<T>(check: () => T | Promise<T>, opts: WaitOptions | string): Promise<T> {
  const o = typeof opts === "string" ? { what: opts } : opts;
  let last: unknown;
  let value: T | undefined;
  try {
    await waitFor(async () => {
      try {
        value = await check();
        return true;
      } catch (e) {
        last = e;
        return false;
      }
    }, o);
  } catch (e) {
    if (e instanceof WaitTimeout && last !== undefined) {
      throw new WaitTimeout(`${(e as Error).message}; last failure: ${last instanceof Error ? last.message : String(last)}`);
    }
    throw e;
  }
  return value as T;
}

/**
 * Resolves once `count()` has not changed for `quietMs` — e.g. a flood that backpressure has
 * stalled. The quiet period is the point ("nothing more happens within X"), not a guess at how
 * long something takes; the wait for it to begin is bounded by `timeoutMs`.
 */
export async function waitForSteady(count: () => number, opts: WaitOptions & { quietMs: number }): Promise<number> {
  let last = count();
  let since = performance.now();
  await waitFor(
    () => {
      const now = count();
      if (now !== last) {
        last = now;
        since = performance.now();
      }
      return performance.now() - since >= opts.quietMs;
    },
    { detail: () => last, ...opts },
  );
  return last;
}

/** `p`, or a WaitTimeout naming `what` if it has not settled within `timeoutMs`. */
export async function withTimeout<T>(p: Promise<T>, what: string, timeoutMs = DEFAULT_WAIT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new WaitTimeout(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
