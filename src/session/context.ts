// What every session of one wasmnet instance shares: the policy (reloadable), the counters
// behind per-identity limits, the memory budget, resolver, metrics, logger, the pool.
import type { Logger } from "../log.ts";
import type { Counters } from "../limits/counters.ts";
import type { MemoryWatch } from "../limits/memory-watch.ts";
import type { SharedBuckets } from "../limits/shared-buckets.ts";
import type { ConnectionPool } from "../net/pool.ts";
import type { Resolver } from "../net/resolve.ts";
import type { PolicyConfig } from "../policy/load.ts";
import type { Metrics } from "./metrics.ts";

/** The running policy. A reload replaces `current` and bumps `generation`; opens read it afresh. */
export interface PolicyHolder {
  readonly current: PolicyConfig;
  readonly generation: number;
}

export interface SessionContext {
  policies: PolicyHolder;
  /** Sessions, connections and daily bytes per identity (in this process, or in Redis). */
  counters: Counters;
  /** One bandwidth bucket per identity, shared by its sessions. */
  buckets: SharedBuckets;
  /** The server-wide memory budget: over it, no new sessions or streams, targets not read. */
  memory: MemoryWatch;
  resolver: Resolver;
  metrics: Metrics;
  log: Logger;
  /** Extra trusted CAs (PEM) for connect_tls; added to the bundled public roots. */
  extraCa: string[];
  /** Null when pooling is off. */
  pool: ConnectionPool | null;
  /** Bytes the client's WebSocket may hold queued before targets are paused. */
  highWatermark: number;
  /** Resume paused targets once the WebSocket's queue is back under this. */
  lowWatermark: number;
  /** How long a DNS look-up may take. */
  dnsTimeoutMs: number;
}
