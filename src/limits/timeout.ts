// A bound on how long any call to a remote store may take. Bun's Redis client keeps a command
// pending for as long as the server stays silent (a stopped or partitioned Redis), so the
// deadline has to come from us.

export class TimeoutError extends Error {
  override name = "TimeoutError";
}

/** `p`, or a TimeoutError after `ms`. `p` keeps running; its late result or error is ignored. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} timed out after ${ms} ms`)), ms);
  });
  // race() subscribes to p, so a rejection after the deadline is handled, not reported as unhandled.
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}
