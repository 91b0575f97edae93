// A session's id table: what each client-chosen id names, the ids whose open is still in
// progress (they count as in use), and the server's own ids for accepted connections, kept
// disjoint from the client's.
import { SERVER_ID_BASE } from "../constants.ts";
import { MAX_ID } from "../protocol/constants.ts";

export class IdTable<R> {
  private readonly live = new Map<number, R>();
  /** Ids whose open (look-up, bind) is in progress. */
  private readonly pending = new Set<number>();
  private nextServerId = SERVER_ID_BASE;

  get(id: number): R | undefined {
    return this.live.get(id);
  }
  /** Live or pending. */
  inUse(id: number): boolean {
    return this.live.has(id) || this.pending.has(id);
  }
  /** Live plus pending: what max_connections counts. */
  get size(): number {
    return this.live.size + this.pending.size;
  }
  set(id: number, r: R): void {
    this.live.set(id, r);
  }
  /** Removes `id` if it still names `r` (an old resource must not unregister a newer one). */
  delete(id: number, r?: R): boolean {
    if (r !== undefined && this.live.get(id) !== r) return false;
    return this.live.delete(id);
  }
  values(): IterableIterator<R> {
    return this.live.values();
  }
  reserve(id: number): void {
    this.pending.add(id);
  }
  /** True when `id` was still reserved (its open was not abandoned meanwhile). */
  unreserve(id: number): boolean {
    return this.pending.delete(id);
  }
  clear(): void {
    this.live.clear();
    this.pending.clear();
  }

  /** A fresh id for a server-created resource, never colliding with a client's. */
  allocateServerId(): number {
    while (this.inUse(this.nextServerId)) this.nextServerId++;
    if (this.nextServerId > MAX_ID) this.nextServerId = SERVER_ID_BASE;
    return this.nextServerId++;
  }
}
