// The running policy and the token keys, and their reload (SIGHUP, or the library's reload()):
// the policy file and the key files are read again; if anything is wrong the running ones stay
// and the reason is reported; if all is well, every open from then on follows the new ones
// (streams already open go on).
import { EMPTY_KEY_RING, loadKeyRing, type KeyRing } from "../auth/keys.ts";
import type { PolicyConfig } from "../policy/load.ts";
import type { PolicyHolder } from "../session/context.ts";

/** `restartNeeded`: start-up-only settings the new policy changes (they keep their old values). */
export type ReloadResult = { ok: true; source: string | null; restartNeeded: string[] } | { ok: false; error: string };

// Read once at start-up (buildContext in options.ts, the WebSocket handler, the supervisor): they
// size or build something that lives as long as the process, so a reload cannot change them.
const STARTUP_ONLY: ReadonlyArray<readonly [string, (p: PolicyConfig) => unknown]> = [
  ["limits.max_message_bytes", (p) => p.limits.maxMessageBytes], // the WebSocket frame cap
  ["limits.max_memory_mb", (p) => p.limits.maxMemoryMb],
  ["network.connection_timeout_secs", (p) => p.connectionTimeoutSecs], // name look-ups and pooled connects; a stream's connect follows the reload
  ["tls.ca_file", (p) => p.tls.caFile],
  ["pool.idle_secs", (p) => p.pool.idleSecs],
  ["pool.per_key", (p) => p.pool.perKey],
  ["pool.warm", (p) => p.pool.warm.join(",")],
  ["cluster.redis", (p) => p.cluster.redis],
  ["cluster.lease_secs", (p) => p.cluster.leaseSecs],
  ["cluster.on_redis_error", (p) => p.cluster.onRedisError],
  ["server.workers", (p) => p.server.workers],
];

/** The start-up-only settings whose values differ between two policies. */
export function startupOnlyChanges(running: PolicyConfig, next: PolicyConfig): string[] {
  return STARTUP_ONLY.filter(([, value]) => value(running) !== value(next)).map(([name]) => name);
}

export class PolicyStore implements PolicyHolder {
  private _current: PolicyConfig;
  private _generation = 0;
  private _keys: KeyRing = EMPTY_KEY_RING;
  private readonly keysLoaded: Promise<void>;
  private keyError: Error | null = null;

  /** `load` reads the policy as configured (the file again, with overrides); it throws when invalid. */
  constructor(private readonly load: () => PolicyConfig) {
    this._current = load();
    this.keysLoaded = this.loadKeys(this._current).then(
      (k) => void (this._keys = k),
      (e) => void (this.keyError = e instanceof Error ? e : new Error(String(e))),
    );
  }

  get current(): PolicyConfig {
    return this._current;
  }
  get generation(): number {
    return this._generation;
  }
  get keys(): KeyRing {
    return this._keys;
  }

  /** Resolves once the key files have been read at start-up; rejects if they could not be. */
  async ready(): Promise<void> {
    await this.keysLoaded;
    if (this.keyError && this._generation === 0) throw this.keyError;
  }

  async reload(): Promise<ReloadResult> {
    let next: PolicyConfig;
    let keys: KeyRing;
    try {
      next = this.load();
      keys = await this.loadKeys(next);
    } catch (e) {
      return { ok: false, error: e instanceof Error ? e.message : String(e) };
    }
    const restartNeeded = startupOnlyChanges(this._current, next);
    this._current = next;
    this._keys = keys;
    this.keyError = null;
    this._generation++;
    return { ok: true, source: next.source, restartNeeded };
  }

  private loadKeys(p: PolicyConfig): Promise<KeyRing> {
    return loadKeyRing(p.auth); // paths in the policy are absolute already
  }
}
