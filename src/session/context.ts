// What every session of one wasmnet instance shares: configuration, resolver, metrics, logger.
import type { Logger } from "../log.ts";
import type { Resolver } from "../net/resolve.ts";
import type { PolicyConfig } from "../policy/load.ts";
import type { Metrics } from "../server/metrics.ts";
import type { ConnectionPool } from "../net/pool.ts";

export interface SessionContext {
  policy: PolicyConfig;
  resolver: Resolver;
  metrics: Metrics;
  log: Logger;
  /** Extra trusted CAs (PEM) for connect_tls; added to the bundled public roots. */
  extraCa: string[];
  /** Null when pooling is off. */
  pool: ConnectionPool | null;
  /** Bytes the WebSocket may hold queued toward the browser before targets are paused. */
  highWatermark: number;
  /** Resume paused targets once the WebSocket's queue is back under this. */
  lowWatermark: number;
  /** How long a DNS look-up may take. */
  dnsTimeoutMs: number;
}
