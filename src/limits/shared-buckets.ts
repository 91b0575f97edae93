// Bandwidth buckets shared by every session of one identity (max_bandwidth_mbps_per_identity):
// two sessions of one identity together get the identity's rate. Reference-counted, so a bucket
// lives while a session uses it and no longer (memory follows the live identities).
import { TokenBucket } from "./token-bucket.ts";

interface Share {
  bucket: TokenBucket;
  users: number;
}

export class SharedBuckets {
  private readonly byKey = new Map<string, Share>();

  /** The identity's bucket at `mbps` (0: none), and the function that gives it back. */
  use(key: string, mbps: number): { bucket: TokenBucket | null; release: () => void } {
    if (mbps <= 0) return { bucket: null, release: () => {} };
    const k = `${key}@${mbps}`; // a reload that changes the rate starts a new bucket
    let share = this.byKey.get(k);
    if (!share) this.byKey.set(k, (share = { bucket: TokenBucket.forMbps(mbps), users: 0 }));
    share.users++;
    let held = true;
    return {
      bucket: share.bucket,
      release: () => {
        if (!held) return;
        held = false;
        if (--share.users === 0) this.byKey.delete(k);
      },
    };
  }

  get size(): number {
    return this.byKey.size;
  }
}
