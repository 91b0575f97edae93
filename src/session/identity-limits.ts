// The per-identity limits of one session, in one place: its share of the identity's
// connections (max_connections_per_identity, counted across the identity's sessions and, with
// Redis, across servers), the identity's daily bytes (max_bytes_per_day, both directions), and
// the identity's shared bandwidth bucket (max_bandwidth_mbps_per_identity). Counting goes through
// ctx.counters, so the same code holds in one process and in a cluster.
import { EMPTY_LEASE, type Lease } from "../limits/counters.ts";
import type { TokenBucket } from "../limits/token-bucket.ts";
import type { PolicyConfig } from "../policy/load.ts";
import type { SessionContext } from "./context.ts";
import type { Identity } from "./identity.ts";

export class IdentityLimits {
  /** Connection units held, by what holds them (a stream, UDP socket or listener). */
  private readonly leases = new Map<object, Lease>();
  private readonly bucketShare: { bucket: TokenBucket | null; release: () => void };
  private spent = false;
  /** The identity's counter keys, built once: spend() runs for every chunk relayed. */
  private readonly bytesKey: string;
  private readonly connsKey: string;

  constructor(
    private readonly ctx: SessionContext,
    private readonly identity: Identity,
    /** The session's policy as of now (a reload changes it). */
    private readonly policy: () => PolicyConfig,
  ) {
    this.bytesKey = `id:${identity.key}`;
    this.connsKey = `id:${identity.key}:conns`;
    this.bucketShare = ctx.buckets.use(identity.key, policy().limits.maxBandwidthMbpsPerIdentity);
  }

  /** The identity's bandwidth bucket, shared with its other sessions; null when it has none. */
  get bucket(): TokenBucket | null {
    return this.bucketShare.bucket;
  }

  /** The identity, as logs and messages name it. */
  get who(): string {
    return this.identity.name ?? this.identity.key;
  }

  // ---- connections ----

  /** The identity has a max_connections_per_identity: acquireConnection counts (and may wait). */
  get countsConnections(): boolean {
    return this.policy().limits.maxConnectionsPerIdentity > 0;
  }

  /**
   * One unit of max_connections_per_identity, then `granted(lease)`; or `refused(why)`. No
   * counting and no wait when the identity has no such limit.
   */
  acquireConnection(granted: (lease: Lease) => void, refused: (why: string) => void): void {
    const max = this.policy().limits.maxConnectionsPerIdentity;
    if (max === 0) return granted(EMPTY_LEASE);
    void this.ctx.counters.acquire([{ key: this.connsKey, max }]).then((a) => {
      if (a.ok) return granted(a.lease);
      refused(a.reason === "limit" ? `max_connections_per_identity (${max}) reached for ${this.who}` : "cluster limits are unavailable; try again later");
    });
  }

  /** `owner` keeps `lease` until release(owner). */
  hold(owner: object, lease: Lease): void {
    if (lease !== EMPTY_LEASE) this.leases.set(owner, lease);
  }

  release(owner: object): void {
    this.leases.get(owner)?.release();
    this.leases.delete(owner);
  }

  // ---- the daily quota ----

  /** The quota is spent (and, unless a new day began, stays so). */
  quotaSpent(): boolean {
    const over = this.overQuota();
    if (!over) this.spent = false; // a new UTC day
    return over;
  }

  quotaMessage(): string {
    return `daily quota of ${this.policy().limits.maxBytesPerDay} bytes (max_bytes_per_day) spent for ${this.who}`;
  }

  /** Count `bytes` toward the identity's day. True exactly when this made the quota spent. */
  spend(bytes: number): boolean {
    const max = this.policy().limits.maxBytesPerDay;
    if (max === 0 || this.spent) return false;
    if (this.ctx.counters.addBytes(this.bytesKey, bytes) < max) return false;
    this.spent = true;
    return true;
  }

  private overQuota(): boolean {
    const max = this.policy().limits.maxBytesPerDay;
    return max > 0 && this.ctx.counters.bytesToday(this.bytesKey) >= max;
  }

  /** The session ended: every unit back. */
  releaseAll(): void {
    for (const lease of this.leases.values()) lease.release();
    this.leases.clear();
    this.bucketShare.release();
  }
}
