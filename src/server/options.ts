// Library/CLI options, and turning them into the context every session shares.
import { readFileSync } from "node:fs";
import { DNS_TIMEOUT_MS, WS_HIGH_WATERMARK, WS_LOW_WATERMARK } from "../constants.ts";
import type { Counters } from "../limits/counters.ts";
import { LocalCounters } from "../limits/local-counters.ts";
import { MemoryWatch } from "../limits/memory-watch.ts";
import { RedisCounters } from "../limits/redis-counters.ts";
import { SharedBuckets } from "../limits/shared-buckets.ts";
import { createLogger, type Logger, type LogLevel } from "../log.ts";
import { ConnectionPool } from "../net/pool.ts";
import { systemResolver, type Resolver } from "../net/resolve.ts";
import { canonicalIp } from "../policy/address.ts";
import { defaultPolicy, loadPolicyFile, unrestrictedPolicy, type PolicyConfig } from "../policy/load.ts";
import type { SessionContext } from "../session/context.ts";
import { Metrics, type Series } from "../session/metrics.ts";
import { PolicyStore } from "./policy-store.ts";

export interface WasmnetOptions {
  /** A loaded policy, or the path of a policy TOML file. Default: the built-in safe policy. */
  policy?: PolicyConfig | string;
  /** Allow every destination and lift the session limits (memory bounds still hold). */
  noPolicy?: boolean;
  /** Overrides the policy's max_bandwidth_mbps. */
  maxBandwidthMbps?: number;
  /** Extra trusted CA certificates (PEM text) for connect_tls, added to the public roots. */
  extraCaPem?: string[];
  /** A PEM file of extra CA certificates (like --tls-ca). */
  tlsCaFile?: string;
  /** Connection pooling: idle seconds (0 = off) and ready connections per destination. */
  poolIdleSecs?: number;
  poolPerKey?: number;
  /** Name resolution; default: the system resolver. Tests inject their own. */
  resolver?: Resolver;
  logger?: Logger;
  logLevel?: LogLevel;
  /** Bytes queued toward a browser before targets are paused (default 1 MiB). */
  highWatermark?: number;
  /** Wisp endpoint path (default "/wisp/"); false turns Wisp off. */
  wispPrefix?: string | false;
  /** wsproxy endpoint prefix, `<prefix>HOST:PORT` (default "/ws/"; bare /HOST:PORT too); false turns it off. */
  wsproxyPrefix?: string | false;
  /** Emscripten PROXY_POSIX_SOCKETS endpoint path (default "/posix/"); false turns it off. */
  posixPath?: string | false;
  /** Message of the day for Wisp v2 clients (MOTD extension). */
  wispMotd?: string;
  /** Count cluster-wide limits in Redis (overrides [cluster] redis). */
  redisUrl?: string;
  /** How long open sessions may go on once a drain starts (overrides [server] drain_secs). */
  drainSecs?: number;
  /**
   * This process's share of the memory budget (a worker of N gets 1/N). Default 1.
   */
  memoryShare?: number;
  /**
   * The other processes of this server (workers): their metric series, so /metrics describes
   * the whole server whichever process answers. `own` is this process's series as this scrape
   * renders them (a supervisor remembers them, so a worker that dies leaves its counts in the totals).
   */
  peerMetrics?: (own: Series[]) => Promise<Series[][]>;
  /** Extra series this process reports (the supervisor's worker counts). */
  extraMetrics?: () => Series[];
  /**
   * The counters to use when the policy names no Redis, instead of this process's own (a
   * worker's: the supervisor counts for every worker, so limits hold for the whole server).
   */
  sharedCounters?: () => Counters;
}

export interface ServerOptions extends WasmnetOptions {
  /** Listen address (default 0.0.0.0). */
  hostname?: string;
  /** Listen port (default 9000; 0 picks a free one). */
  port?: number;
}

/** The policy the options describe: the file (read now), or the given or built-in one, with command-line overrides. */
export function resolvePolicy(o: WasmnetOptions): PolicyConfig {
  let p: PolicyConfig;
  if (o.noPolicy) p = unrestrictedPolicy();
  else if (typeof o.policy === "string") p = loadPolicyFile(o.policy);
  else p = o.policy ?? defaultPolicy();
  if (o.maxBandwidthMbps !== undefined) {
    // An operator's override holds for every profile too.
    const mbps = o.maxBandwidthMbps;
    p = { ...p, maxBandwidthMbps: mbps, profiles: new Map([...p.profiles].map(([k, v]) => [k, { ...v, maxBandwidthMbps: mbps }])) };
  }
  if (o.poolIdleSecs !== undefined || o.poolPerKey !== undefined)
    p = { ...p, pool: { ...p.pool, idleSecs: o.poolIdleSecs ?? p.pool.idleSecs, perKey: o.poolPerKey ?? p.pool.perKey } };
  if (o.redisUrl !== undefined) p = { ...p, cluster: { ...p.cluster, redis: o.redisUrl } };
  if (o.drainSecs !== undefined) p = { ...p, server: { ...p.server, drainSecs: o.drainSecs } };
  return p;
}

function readCaFiles(files: (string | null | undefined)[]): string[] {
  const pems: string[] = [];
  for (const f of files) {
    if (!f) continue;
    try {
      pems.push(readFileSync(f, "utf8"));
    } catch (e) {
      throw new Error(`cannot read CA file ${f}: ${(e as Error).message}`);
    }
  }
  return pems;
}

/** This process's counters: in Redis when [cluster] redis is set, else shared ones or its own. */
function makeCounters(policy: PolicyConfig, log: Logger, shared: (() => Counters) | undefined): Counters {
  const { redis, leaseSecs, onRedisError } = policy.cluster;
  if (redis === null) return shared?.() ?? new LocalCounters();
  return new RedisCounters({ url: redis, leaseSecs, onRedisError, logger: log });
}

export function buildContext(o: WasmnetOptions): SessionContext & { policies: PolicyStore } {
  // The first address parse compiles ipaddr.js's regular expressions (~1 ms): pay it at start-up,
  // not on a client's first connect.
  for (const a of ["127.0.0.1", "::1", "::ffff:127.0.0.1", "example.com"]) canonicalIp(a);
  const policies = new PolicyStore(() => resolvePolicy(o));
  const policy = policies.current;
  const log = o.logger ?? createLogger(o.logLevel ?? "info");
  const extraCa = [
    ...readCaFiles([process.env.NODE_EXTRA_CA_CERTS, policy.tls.caFile, o.tlsCaFile]),
    ...(o.extraCaPem ?? []),
  ];
  const metrics = new Metrics();
  const high = o.highWatermark ?? WS_HIGH_WATERMARK;
  const ctx: SessionContext & { policies: PolicyStore } = {
    policies,
    counters: makeCounters(policy, log, o.sharedCounters),
    buckets: new SharedBuckets(),
    memory: new MemoryWatch(policy.limits.maxMemoryMb * 1024 * 1024 * (o.memoryShare ?? 1)),
    resolver: o.resolver ?? systemResolver,
    metrics,
    log,
    extraCa,
    pool: null,
    highWatermark: high,
    lowWatermark: Math.min(WS_LOW_WATERMARK, high / 4),
    dnsTimeoutMs: Math.min(DNS_TIMEOUT_MS, policy.connectionTimeoutSecs * 1000),
  };
  if (policy.pool.idleSecs > 0) {
    // Warm targets are checked against the running policy, reloads included.
    const gate = {
      get rules() {
        return policies.current.rules;
      },
      get bind() {
        return policies.current;
      },
      resolver: ctx.resolver,
      dnsTimeoutMs: ctx.dnsTimeoutMs,
    };
    ctx.pool = new ConnectionPool({ ...policy.pool, connectionTimeoutSecs: policy.connectionTimeoutSecs, gate, log });
  }
  return ctx;
}
