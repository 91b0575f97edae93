// The auth example's log-in sessions: session cookie → user, each for a fixed time, and at most
// a fixed number at once, so a stream of log-ins (every POST /login makes one) cannot grow the
// app's memory without bound. A real app keeps its sessions in its own store.

export interface SessionStoreOptions {
  /** How long a session lasts after its log-in. */
  ttlMs: number;
  /** At most this many sessions at once: a log-in beyond it ends the oldest one. */
  maxSessions: number;
  /** The clock (milliseconds), for tests. */
  now?: () => number;
}

export class SessionStore {
  // A Map keeps insertion order, and every session lasts the same ttlMs: the first entries are
  // the oldest, so both expiry and the cap only ever drop from the front.
  readonly #sessions = new Map<string, { user: string; expires: number }>();
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #now: () => number;

  constructor(opts: SessionStoreOptions) {
    if (!(opts.ttlMs > 0) || !(opts.maxSessions >= 1)) throw new RangeError("ttlMs and maxSessions must be positive");
    this.#ttlMs = opts.ttlMs;
    this.#max = Math.floor(opts.maxSessions);
    this.#now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** A new session for `user`: its id (32 hex digits, the cookie's value). */
  create(user: string): string {
    const now = this.#now();
    this.#dropExpired(now);
    while (this.#sessions.size >= this.#max) this.#sessions.delete(this.#sessions.keys().next().value!);
    const sid = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex");
    this.#sessions.set(sid, { user, expires: now + this.#ttlMs });
    return sid;
  }

  /** The user of session `sid`, or null when there is none or it has expired. */
  userOf(sid: string): string | null {
    const s = this.#sessions.get(sid);
    if (!s) return null;
    if (s.expires <= this.#now()) {
      this.#sessions.delete(sid);
      return null;
    }
    return s.user;
  }

  /** Ends session `sid` (log-out). */
  end(sid: string): void {
    this.#sessions.delete(sid);
  }

  #dropExpired(now: number): void {
    for (const [sid, s] of this.#sessions) {
      if (s.expires > now) return;
      this.#sessions.delete(sid);
    }
  }
}
