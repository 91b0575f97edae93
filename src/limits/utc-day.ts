// Daily byte quotas reset at UTC midnight, the same instant on every instance whatever its zone.

export const DAY_MS = 86_400_000;

/** Start (ms since the epoch) of the UTC day containing `ms`. */
export function utcDayStart(ms: number): number {
  return Math.floor(ms / DAY_MS) * DAY_MS;
}

/** "yyyy-mm-dd" of the UTC day containing `ms`. */
export function utcDayName(ms: number): string {
  return new Date(utcDayStart(ms)).toISOString().slice(0, 10);
}
