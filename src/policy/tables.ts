// One parser per table of the policy file. Each reads its table into the config it is given
// and leaves omitted keys as they are, so the same parsers build the top level (from the
// defaults) and a profile (from a copy of the top level). Each table also says which of its
// keys hold for the whole server: those are refused inside a profile, because a profile only
// takes effect once a session has an identity, and these are decided before that or shared.
import type { PolicyConfig, WispUser } from "./config.ts";
import { decideAddress, decideName } from "./decide.ts";
import { splitHostPort } from "./address.ts";
import { Ed25519KeyError, parseEd25519PublicKey } from "./ed25519-key.ts";
import { parsePortList } from "./ports.ts";
import { type TableReader, isTable, show } from "./toml-reader.ts";

export interface TableSpec {
  keys: readonly string[];
  /** `true`: the whole table is server-wide; otherwise the server-wide keys among `keys`. */
  serverWide: true | readonly string[];
  parse(r: TableReader, cfg: PolicyConfig): void;
}

function parseNetwork(r: TableReader, cfg: PolicyConfig): void {
  cfg.rules.deny = r.entries("deny") ?? cfg.rules.deny;
  cfg.rules.allow = r.entries("allow") ?? cfg.rules.allow;
  const bp = r.raw("bind_ports");
  if (bp !== undefined) {
    if (typeof bp !== "string") r.fail("bind_ports", `expected a string like "3000-9999" or "3000,8080", got ${show(bp)}`);
    try {
      cfg.bindPorts = parsePortList(bp);
    } catch (e) {
      const m = (e as Error).message;
      r.fail("bind_ports", m.includes(JSON.stringify(bp)) ? m : `${m} in ${JSON.stringify(bp)}`);
    }
    cfg.bindPortsText = bp;
  }
  cfg.bindAddrs = r.addresses("bind_addrs") ?? cfg.bindAddrs;
  cfg.maxConnections = r.integer("max_connections", cfg.maxConnections, 0);
  cfg.maxBandwidthMbps = r.number("max_bandwidth_mbps", cfg.maxBandwidthMbps);
  cfg.connectionTimeoutSecs = r.number("connection_timeout_secs", cfg.connectionTimeoutSecs, { positive: true });
}

function parseLimits(r: TableReader, cfg: PolicyConfig): void {
  const L = cfg.limits;
  L.maxSessions = r.integer("max_sessions", L.maxSessions, 0);
  L.maxSessionsPerIp = r.integer("max_sessions_per_ip", L.maxSessionsPerIp, 0);
  // Memory bounds cannot be switched off, so 0 is not "unlimited" for these three.
  L.maxMemoryMb = r.integer("max_memory_mb", L.maxMemoryMb, 1);
  L.streamBufferBytes = r.integer("stream_buffer_bytes", L.streamBufferBytes, 1);
  L.maxMessageBytes = r.integer("max_message_bytes", L.maxMessageBytes, 1);
  L.idleTimeoutSecs = r.integer("idle_timeout_secs", L.idleTimeoutSecs, 0);
  L.maxSessionsPerIdentity = r.integer("max_sessions_per_identity", L.maxSessionsPerIdentity, 0);
  L.maxConnectionsPerIdentity = r.integer("max_connections_per_identity", L.maxConnectionsPerIdentity, 0);
  L.maxBandwidthMbpsPerIdentity = r.number("max_bandwidth_mbps_per_identity", L.maxBandwidthMbpsPerIdentity);
  L.maxBytesPerDay = r.integer("max_bytes_per_day", L.maxBytesPerDay, 0);
}

function parseTls(r: TableReader, cfg: PolicyConfig): void {
  cfg.tls.caFile = r.filePath("ca_file") ?? cfg.tls.caFile;
}

function parsePool(r: TableReader, cfg: PolicyConfig): void {
  cfg.pool.idleSecs = r.number("idle_secs", cfg.pool.idleSecs);
  cfg.pool.perKey = r.integer("per_key", cfg.pool.perKey, 1);
  const warm = r.stringArray("warm");
  if (warm === undefined) return;
  warm.forEach((w, i) => {
    const key = `warm[${i}]`;
    const hp = splitHostPort(w);
    if (hp === null) r.fail(key, `${JSON.stringify(w)}: expected "host:port" (IPv6 as "[::1]:443")`);
    // Warming is the server connecting on its own: a target the policy refuses would be an
    // SSRF the operator wrote down. [network] is parsed first; the pool still checks the
    // resolved addresses at connect time.
    const d = hp.isIp ? decideAddress(cfg.rules, null, hp.host, hp.port) : decideName(cfg.rules, hp.host, hp.port);
    if (!d.allowed) r.fail(key, `${JSON.stringify(w)} is refused by the policy: ${d.reason}`);
  });
  cfg.pool.warm = warm;
}

function parseServer(r: TableReader, cfg: PolicyConfig): void {
  const origins = r.stringArray("allowed_origins");
  if (origins !== undefined) {
    cfg.server.allowedOrigins = origins.map((o, i) => {
      const fail = () => r.fail(`allowed_origins[${i}]`, `${JSON.stringify(o)}: expected an origin like "https://app.example.com" (scheme://host[:port], no path)`);
      let u: URL;
      try {
        u = new URL(o);
      } catch {
        return fail();
      }
      if ((u.protocol !== "http:" && u.protocol !== "https:") || u.origin.toLowerCase() !== o.toLowerCase()) fail();
      return u.origin;
    });
  }
  cfg.server.trustedProxies = r.addresses("trusted_proxies") ?? cfg.server.trustedProxies;
  const workers = r.raw("workers");
  if (workers !== undefined) {
    if (workers !== "auto" && (typeof workers !== "number" || !Number.isInteger(workers) || workers < 1)) {
      r.fail("workers", `expected a whole number of at least 1 or "auto", got ${show(workers)}`);
    }
    cfg.server.workers = workers as number | "auto";
  }
  cfg.server.drainSecs = r.number("drain_secs", cfg.server.drainSecs);
}

const WISP_USER_KEYS = ["password", "public_key", "profile"] as const;
const utf8Bytes = (s: string) => new TextEncoder().encode(s).length;

/**
 * [wisp] users: `alice = "password"` (password only, top-level policy), or a table per user,
 * `[wisp.users.alice] password = "…", public_key = "<Ed25519, hex or base64>", profile = "free"`,
 * with a password, a key, or both. Profiles are checked once [profiles] is read (load.ts).
 */
function parseWisp(r: TableReader, cfg: PolicyConfig): void {
  const users = r.raw("users");
  if (users !== undefined) {
    if (!isTable(users)) r.fail("users", `expected a table of user = "password" or [wisp.users.NAME] tables, got ${show(users)}`);
    const byKey = new Map<string, string>();
    for (const [user, value] of Object.entries(users)) {
      const key = `users.${user}`;
      if (user === "" || utf8Bytes(user) > 255) r.fail(key, "user names are 1 to 255 bytes (Wisp's field size)");
      const u: WispUser = { password: null, publicKey: null, profile: null };
      if (typeof value === "string") u.password = value;
      else if (isTable(value)) {
        for (const k of Object.keys(value)) {
          if (!(WISP_USER_KEYS as readonly string[]).includes(k)) r.fail(`${key}.${k}`, `unknown key (known in [wisp.users.NAME]: ${WISP_USER_KEYS.join(", ")})`);
        }
        if (value.password !== undefined) {
          if (typeof value.password !== "string") r.fail(`${key}.password`, `expected a non-empty password string, got ${show(value.password)}`);
          u.password = value.password;
        }
        if (value.public_key !== undefined) {
          const pk = value.public_key;
          if (typeof pk !== "string") r.fail(`${key}.public_key`, `expected an Ed25519 public key string, got ${show(pk)}`);
          try {
            u.publicKey = parseEd25519PublicKey(pk);
          } catch (e) {
            if (e instanceof Ed25519KeyError) r.fail(`${key}.public_key`, `${show(pk)}: ${e.message}`);
            throw e;
          }
          const hex = Buffer.from(u.publicKey).toString("hex");
          const other = byKey.get(hex);
          if (other !== undefined) r.fail(`${key}.public_key`, `the same key as users.${other}: a key must name one user`);
          byKey.set(hex, user);
        }
        if (value.profile !== undefined) {
          if (typeof value.profile !== "string" || value.profile === "") r.fail(`${key}.profile`, `expected a profile name, got ${show(value.profile)}`);
          u.profile = value.profile;
        }
        if (u.password === null && u.publicKey === null) r.fail(key, "needs a password, a public_key, or both: there is no way to log in as this user");
      } else r.fail(key, `expected a non-empty password string, got ${show(value)} (or a table with password, public_key, profile)`);
      if (u.password !== null) {
        if (u.password === "") r.fail(typeof value === "string" ? key : `${key}.password`, "expected a non-empty password string, got \"\"");
        if (utf8Bytes(u.password) > 0xffff) r.fail(typeof value === "string" ? key : `${key}.password`, "passwords are at most 65535 bytes (Wisp's field size)");
      }
      cfg.wisp.users.set(user, u);
    }
  }
  const motd = r.raw("motd");
  if (motd !== undefined) {
    if (typeof motd !== "string") r.fail("motd", `expected a string, got ${show(motd)}`);
    cfg.wisp.motd = motd;
  }
}

function parseAuth(r: TableReader, cfg: PolicyConfig): void {
  const a = cfg.auth;
  a.required = r.boolean("required", a.required);
  a.audience = r.string("audience") ?? a.audience;
  const issuers = r.stringArray("issuers");
  if (issuers !== undefined) {
    if (issuers.length === 0) r.fail("issuers", "an empty list would refuse every token; omit the key to accept any issuer");
    issuers.forEach((iss, i) => {
      if (iss === "") r.fail(`issuers[${i}]`, "expected a non-empty issuer");
    });
    a.issuers = issuers;
  }
  a.hs256SecretFile = r.filePath("hs256_secret_file") ?? a.hs256SecretFile;
  a.jwksFile = r.filePath("jwks_file") ?? a.jwksFile;
  a.leewaySecs = r.integer("leeway_secs", a.leewaySecs, 0);
  const anyKey = a.hs256SecretFile !== null || a.jwksFile !== null;
  if (anyKey && a.audience === null) {
    r.fail("audience", "required when hs256_secret_file or jwks_file is set (without it, a token minted for another service would be accepted here)");
  }
  if (a.required && !anyKey) r.fail("required", "true needs hs256_secret_file or jwks_file: there is no key to verify tokens with");
}

function parseCluster(r: TableReader, cfg: PolicyConfig): void {
  const url = r.string("redis", 'a URL like "redis://host:6379/0"');
  if (url !== undefined) cfg.cluster.redis = checkRedisUrl(r, url);
  cfg.cluster.leaseSecs = r.integer("lease_secs", cfg.cluster.leaseSecs, 1);
  cfg.cluster.onRedisError = r.oneOf("on_redis_error", ["local", "deny"] as const, cfg.cluster.onRedisError);
}

/** redis://[user:password@]host[:port][/db] or rediss://…; the password never reaches a message. */
function checkRedisUrl(r: TableReader, url: string): string {
  let u: URL | null = null;
  try {
    u = new URL(url);
  } catch {
    // reported below
  }
  // As written, unless it holds a password; an unparseable value may hold one anywhere.
  const shown = u === null ? "the value" : JSON.stringify(u.password === "" ? url : redactUrl(u));
  const hint = 'expected "redis://host:6379/0" or "rediss://…" (TLS)';
  if (u === null) r.fail("redis", `not a URL; ${hint}`);
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") r.fail("redis", `${shown}: scheme must be redis or rediss; ${hint}`);
  if (u.hostname === "") r.fail("redis", `${shown}: missing host; ${hint}`);
  if (!/^(\/[0-9]{0,5})?$/.test(u.pathname)) r.fail("redis", `${shown}: the path can only be a database number; ${hint}`);
  if (u.search !== "" || u.hash !== "") r.fail("redis", `${shown}: no query or fragment; ${hint}`);
  return url;
}

/** A URL as it may appear in messages and `policy check` output: any password replaced. */
export function redactUrl(u: URL): string {
  if (u.password === "") return u.href;
  const c = new URL(u.href);
  c.password = "***";
  return c.href;
}

/** Every table, in the order they are parsed: [pool] checks its targets against [network]. */
export const TABLES: Readonly<Record<string, TableSpec>> = Object.freeze({
  network: {
    keys: ["deny", "allow", "bind_ports", "bind_addrs", "max_connections", "max_bandwidth_mbps", "connection_timeout_secs"],
    serverWide: [],
    parse: parseNetwork,
  },
  limits: {
    keys: [
      "max_sessions",
      "max_sessions_per_ip",
      "max_memory_mb",
      "stream_buffer_bytes",
      "max_message_bytes",
      "idle_timeout_secs",
      "max_sessions_per_identity",
      "max_connections_per_identity",
      "max_bandwidth_mbps_per_identity",
      "max_bytes_per_day",
    ],
    // Counted before a session has an identity, or (max_message_bytes) the WebSocket
    // server's frame limit, one for every connection.
    serverWide: ["max_sessions", "max_sessions_per_ip", "max_memory_mb", "max_message_bytes"],
    parse: parseLimits,
  },
  tls: { keys: ["ca_file"], serverWide: true, parse: parseTls },
  pool: { keys: ["idle_secs", "per_key", "warm"], serverWide: true, parse: parsePool },
  server: { keys: ["allowed_origins", "trusted_proxies", "workers", "drain_secs"], serverWide: true, parse: parseServer },
  wisp: { keys: ["users", "motd"], serverWide: true, parse: parseWisp },
  auth: { keys: ["required", "audience", "issuers", "hs256_secret_file", "jwks_file", "leeway_secs"], serverWide: true, parse: parseAuth },
  cluster: { keys: ["redis", "lease_secs", "on_redis_error"], serverWide: true, parse: parseCluster },
});
