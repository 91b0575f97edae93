// What every session of one wasmnet instance shares: configuration, resolver, metrics, logger,
// the connection pool.
import type { Logger } from "../log.ts";
import type { ConnectionPool } from "../net/pool.ts";
import type { Resolver } from "../net/resolve.ts";
import type { PolicyConfig } from "../policy/load.ts";
import type { Metrics } from "./metrics.ts";

export interface SessionContext {
  policy: PolicyConfig;
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
