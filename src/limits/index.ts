// Limits: counters for "how many at once" and "how much today" (docs/cluster-limits.md).
export { EMPTY_LEASE, UNAVAILABLE_KEY, limitedSpecs, type Acquired, type Counters, type CountersState, type Lease, type LimitSpec } from "./counters.ts";
export { LocalCounters, type LocalCountersOptions } from "./local-counters.ts";
export { RedisCounters, type OnRedisError, type RedisCountersOptions } from "./redis-counters.ts";
export { TimeoutError, withTimeout } from "./timeout.ts";
