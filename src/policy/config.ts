// What a policy is once loaded: the shape the rest of the server reads, its defaults, and
// profiles. A profile is a complete PolicyConfig too, so everything that takes a policy
// takes a profile without knowing the difference.
import { ALLOW_ALL, DEFAULT_ALLOW, DEFAULT_DENY, type RuleSet, compileRules } from "./decide.ts";
import { type Entry, parseEntry } from "./entry.ts";
import { defaultMaxMemoryMb } from "./memory-budget.ts";
import { ALL_PORTS, type PortRange, parsePortList } from "./ports.ts";

export interface PolicyConfig {
  source: string | null; // file path, or null for built-in defaults
  // [network]
  rules: RuleSet;
  bindPorts: PortRange[];
  bindPortsText: string; // as written, for messages
  bindAddrs: Entry[]; // extra addresses a listener may bind, beyond wildcard and loopback
  maxConnections: number; // 0 = unlimited
  maxBandwidthMbps: number; // 0 = unlimited
  connectionTimeoutSecs: number;
  limits: {
    maxSessions: number; // 0 = unlimited; server-wide
    maxSessionsPerIp: number; // 0 = unlimited; server-wide
    maxMemoryMb: number; // server-wide budget in MiB; always set (memory bounds cannot be switched off)
    streamBufferBytes: number;
    maxMessageBytes: number; // server-wide: it sizes the WebSocket server's frame limit
    idleTimeoutSecs: number; // 0 = no idle timeout
    maxSessionsPerIdentity: number; // 0 = unlimited
    maxConnectionsPerIdentity: number; // 0 = unlimited; across the identity's sessions
    maxBandwidthMbpsPerIdentity: number; // 0 = unlimited; one bucket for the identity's sessions
    maxBytesPerDay: number; // 0 = unlimited; both directions
  };
  tls: { caFile: string | null }; // absolute, or relative to the working directory when no file
  pool: { idleSecs: number; perKey: number; warm: string[] };
  server: {
    allowedOrigins: string[] | null; // null = any Origin (the server warns)
    trustedProxies: Entry[]; // peers whose X-Forwarded-For names the real client (default none)
    workers: number | "auto"; // "auto" = the CPU count
    drainSecs: number; // how long open sessions may go on after SIGTERM
  };
  wisp: {
    users: Map<string, WispUser>; // Wisp v2 authentication (password 0x02, key 0x03); empty = off
    motd: string | null;
  };
  auth: {
    required: boolean; // false: anonymous sessions allowed (identity = client IP)
    audience: string | null; // expected `aud`; set whenever a key file is
    issuers: string[] | null; // accepted `iss`; null = any
    hs256SecretFile: string | null; // absolute path
    jwksFile: string | null; // absolute path
    leewaySecs: number;
  };
  cluster: {
    redis: string | null; // redis:// or rediss:// URL; null = limits are per process
    leaseSecs: number;
    onRedisError: "local" | "deny";
  };
  /** [profiles.NAME], each complete (top level plus its own tables). Empty inside a profile. */
  profiles: Map<string, PolicyConfig>;
}

/** One `[wisp] users` entry: how the user may log in, and the profile its sessions run under. */
export interface WispUser {
  /** Password authentication (extension 0x02); null: not by password. */
  password: string | null;
  /** Raw 32-byte Ed25519 public key for key authentication (extension 0x03); null: not by key. */
  publicKey: Uint8Array | null;
  /** `[profiles.NAME]` for its sessions; null: the top-level policy. */
  profile: string | null;
}

const DEFAULT_BIND_PORTS = "3000-9999";
const MIB = 1024 * 1024;

export function defaultPolicy(): PolicyConfig {
  return {
    source: null,
    rules: compileRules(DEFAULT_DENY, DEFAULT_ALLOW),
    bindPorts: parsePortList(DEFAULT_BIND_PORTS),
    bindPortsText: DEFAULT_BIND_PORTS,
    bindAddrs: [],
    maxConnections: 50,
    maxBandwidthMbps: 10,
    connectionTimeoutSecs: 30,
    limits: {
      maxSessions: 1000,
      maxSessionsPerIp: 32,
      maxMemoryMb: defaultMaxMemoryMb(),
      streamBufferBytes: MIB,
      maxMessageBytes: MIB,
      idleTimeoutSecs: 300,
      maxSessionsPerIdentity: 0,
      maxConnectionsPerIdentity: 0,
      maxBandwidthMbpsPerIdentity: 0,
      maxBytesPerDay: 0,
    },
    tls: { caFile: null },
    pool: { idleSecs: 0, perKey: 8, warm: [] },
    server: { allowedOrigins: null, trustedProxies: [], workers: 1, drainSecs: 5 },
    wisp: { users: new Map(), motd: null },
    auth: { required: false, audience: null, issuers: null, hs256SecretFile: null, jwksFile: null, leewaySecs: 30 },
    cluster: { redis: null, leaseSecs: 15, onRedisError: "local" },
    profiles: new Map(),
  };
}

/** --no-policy: every destination, no session limits; memory bounds keep their defaults. */
export function unrestrictedPolicy(): PolicyConfig {
  const d = defaultPolicy();
  return {
    ...d,
    rules: { deny: [...ALLOW_ALL.deny], allow: [...ALLOW_ALL.allow] },
    bindPorts: [...ALL_PORTS],
    bindPortsText: "1-65535",
    bindAddrs: [parseEntry("*")],
    maxConnections: 0,
    maxBandwidthMbps: 0,
    limits: { ...d.limits, maxSessions: 0, maxSessionsPerIp: 0 },
  };
}

/**
 * A deep-enough copy for a profile to start from: every object and array a table parser
 * replaces or fills is the copy's own. Entries are shared; nothing mutates them.
 */
export function copyPolicy(p: PolicyConfig): PolicyConfig {
  return {
    source: p.source,
    rules: { deny: [...p.rules.deny], allow: [...p.rules.allow] },
    bindPorts: [...p.bindPorts],
    bindPortsText: p.bindPortsText,
    bindAddrs: [...p.bindAddrs],
    maxConnections: p.maxConnections,
    maxBandwidthMbps: p.maxBandwidthMbps,
    connectionTimeoutSecs: p.connectionTimeoutSecs,
    limits: { ...p.limits },
    tls: { ...p.tls },
    pool: { ...p.pool, warm: [...p.pool.warm] },
    server: {
      ...p.server,
      allowedOrigins: p.server.allowedOrigins === null ? null : [...p.server.allowedOrigins],
      trustedProxies: [...p.server.trustedProxies],
    },
    wisp: { users: new Map(p.wisp.users), motd: p.wisp.motd },
    auth: { ...p.auth, issuers: p.auth.issuers === null ? null : [...p.auth.issuers] },
    cluster: { ...p.cluster },
    profiles: new Map(),
  };
}

/** The policy a session runs under: the top level for null, the profile, or null for an unknown name. */
export function policyFor(cfg: PolicyConfig, profile: string | null): PolicyConfig | null {
  if (profile === null) return cfg;
  return cfg.profiles.get(profile) ?? null;
}
