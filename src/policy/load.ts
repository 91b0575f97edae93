// The policy file. Every mistake is fatal at start-up and names the file, the
// key and the value: a typo that silently drops a deny rule is exactly the
// kind of misconfiguration that turns a relay into an SSRF proxy.
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve as resolvePath } from "node:path";
import { TomlError, parse as parseToml } from "smol-toml";
import { splitHostPort } from "./address.ts";
import { ALLOW_ALL, DEFAULT_ALLOW, DEFAULT_DENY, type RuleSet, decideAddress, decideName } from "./decide.ts";
import { type Entry, PolicyEntryError, parseEntry } from "./entry.ts";
import { ALL_PORTS, type PortRange, parsePortList } from "./ports.ts";

export interface PolicyConfig {
  source: string | null; // file path, or null for built-in defaults
  rules: RuleSet;
  bindPorts: PortRange[];
  bindAddrs: Entry[]; // extra addresses a listener may bind, beyond wildcard and loopback
  maxConnections: number; // 0 = unlimited
  maxBandwidthMbps: number; // 0 = unlimited
  connectionTimeoutSecs: number;
  limits: {
    maxSessions: number; // 0 = unlimited
    maxSessionsPerIp: number; // 0 = unlimited
    streamBufferBytes: number;
    maxMessageBytes: number;
    idleTimeoutSecs: number; // 0 = no idle timeout
  };
  tls: { caFile: string | null }; // absolute, or relative to the working directory when no file
  pool: { idleSecs: number; perKey: number; warm: string[] };
  server: {
    allowedOrigins: string[] | null; // null = any Origin (the server warns)
    trustedProxies: Entry[]; // peers whose X-Forwarded-For names the real client (default none)
  };
  wisp: {
    users: Map<string, string>; // Wisp v2 password authentication; empty = off
    motd: string | null;
  };
}

export class PolicyFileError extends Error {
  override name = "PolicyFileError";
  constructor(
    readonly file: string,
    readonly key: string | null,
    detail: string,
  ) {
    super(key === null ? `${file}: ${detail}` : `${file}: ${key}: ${detail}`);
  }
}

const DEFAULT_BIND_PORTS = "3000-9999";
const MIB = 1024 * 1024;

export function defaultPolicy(): PolicyConfig {
  return {
    source: null,
    rules: compileDefault(),
    bindPorts: parsePortList(DEFAULT_BIND_PORTS),
    bindAddrs: [],
    maxConnections: 50,
    maxBandwidthMbps: 10,
    connectionTimeoutSecs: 30,
    limits: { maxSessions: 1000, maxSessionsPerIp: 32, streamBufferBytes: MIB, maxMessageBytes: MIB, idleTimeoutSecs: 300 },
    tls: { caFile: null },
    pool: { idleSecs: 0, perKey: 8, warm: [] },
    server: { allowedOrigins: null, trustedProxies: [] },
    wisp: { users: new Map(), motd: null },
  };
}

function compileDefault(): RuleSet {
  return { deny: DEFAULT_DENY.map(parseEntry), allow: DEFAULT_ALLOW.map(parseEntry) };
}

/** --no-policy: every destination, no session limits; memory bounds keep their defaults. */
export function unrestrictedPolicy(): PolicyConfig {
  const d = defaultPolicy();
  return {
    ...d,
    rules: { deny: [...ALLOW_ALL.deny], allow: [...ALLOW_ALL.allow] },
    bindPorts: [...ALL_PORTS],
    bindAddrs: [parseEntry("*")],
    maxConnections: 0,
    maxBandwidthMbps: 0,
    limits: { ...d.limits, maxSessions: 0, maxSessionsPerIp: 0 },
  };
}

type Value = unknown;
type Table = Record<string, Value>;

const SCHEMA: Record<string, readonly string[]> = {
  network: ["deny", "allow", "bind_ports", "bind_addrs", "max_connections", "max_bandwidth_mbps", "connection_timeout_secs"],
  limits: ["max_sessions", "max_sessions_per_ip", "stream_buffer_bytes", "max_message_bytes", "idle_timeout_secs"],
  tls: ["ca_file"],
  pool: ["idle_secs", "per_key", "warm"],
  server: ["allowed_origins", "trusted_proxies"],
  wisp: ["users", "motd"],
};

function show(v: Value): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return "an array";
  if (v !== null && typeof v === "object") return v instanceof Date ? `the date ${v.toISOString()}` : "a table";
  return String(v);
}

function isTable(v: Value): v is Table {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date);
}

export function parsePolicy(text: string, source: string): PolicyConfig {
  const err = (key: string | null, detail: string) => new PolicyFileError(source, key, detail);
  let doc: Table;
  try {
    doc = parseToml(text, { unsafeKeyBehaviour: "throw" }) as Table;
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split("\n")[0]!.replace(/^Invalid TOML document: /, "");
      throw new PolicyFileError(`${source}:${e.line}:${e.column}`, null, `TOML syntax error: ${first}`);
    }
    throw err(null, `TOML syntax error: ${(e as Error).message}`);
  }

  for (const [name, value] of Object.entries(doc)) {
    const known = SCHEMA[name];
    if (known === undefined || !Object.hasOwn(SCHEMA, name)) {
      throw err(name, `unknown ${isTable(value) ? "table" : "key"} (known tables: ${Object.keys(SCHEMA).join(", ")})`);
    }
    if (!isTable(value)) throw err(name, `expected a table [${name}], got ${show(value)}`);
    for (const key of Object.keys(value)) {
      if (!known.includes(key)) throw err(`${name}.${key}`, `unknown key (known in [${name}]: ${known.join(", ")})`);
    }
  }

  const table = (name: string): Table => (isTable(doc[name]) ? (doc[name] as Table) : {});
  const network = table("network");
  const limits = table("limits");
  const tls = table("tls");
  const pool = table("pool");
  const server = table("server");
  const cfg = defaultPolicy();
  cfg.source = source;

  const get = (t: Table, k: string): Value => (Object.hasOwn(t, k) ? t[k] : undefined);

  const integer = (t: Table, tname: string, k: string, dflt: number, min: number): number => {
    const v = get(t, k);
    if (v === undefined) return dflt;
    const key = `${tname}.${k}`;
    if (typeof v !== "number" || !Number.isInteger(v)) throw err(key, `expected an integer, got ${show(v)}`);
    if (v < min) throw err(key, `must be at least ${min}, got ${v}`);
    return v;
  };
  const number = (t: Table, tname: string, k: string, dflt: number, positive: boolean): number => {
    const v = get(t, k);
    if (v === undefined) return dflt;
    const key = `${tname}.${k}`;
    if (typeof v !== "number" || !Number.isFinite(v)) throw err(key, `expected a number, got ${show(v)}`);
    if (positive ? v <= 0 : v < 0) throw err(key, `must be ${positive ? "greater than 0" : "0 or more"}, got ${v}`);
    return v;
  };
  const stringArray = (t: Table, tname: string, k: string): string[] | undefined => {
    const v = get(t, k);
    if (v === undefined) return undefined;
    const key = `${tname}.${k}`;
    if (!Array.isArray(v)) throw err(key, `expected an array of strings, got ${show(v)}`);
    v.forEach((item, i) => {
      if (typeof item !== "string") throw err(`${key}[${i}]`, `expected a string, got ${show(item)}`);
    });
    return v as string[];
  };
  const entries = (key: string, texts: string[]): Entry[] =>
    texts.map((s, i) => {
      try {
        return parseEntry(s);
      } catch (e) {
        if (e instanceof PolicyEntryError) throw err(`${key}[${i}]`, e.message);
        throw e;
      }
    });

  // [network]
  const deny = stringArray(network, "network", "deny");
  const allow = stringArray(network, "network", "allow");
  if (deny !== undefined) {
    cfg.rules.deny = entries("network.deny", deny);
  }
  if (allow !== undefined) {
    cfg.rules.allow = entries("network.allow", allow);
  }
  const bp = get(network, "bind_ports");
  if (bp !== undefined) {
    if (typeof bp !== "string") throw err("network.bind_ports", `expected a string like "3000-9999" or "3000,8080", got ${show(bp)}`);
    try {
      cfg.bindPorts = parsePortList(bp);
    } catch (e) {
      const m = (e as Error).message;
      throw err("network.bind_ports", m.includes(JSON.stringify(bp)) ? m : `${m} in ${JSON.stringify(bp)}`);
    }
  }
  const ba = stringArray(network, "network", "bind_addrs");
  if (ba !== undefined) {
    cfg.bindAddrs = entries("network.bind_addrs", ba);
    cfg.bindAddrs.forEach((e, i) => {
      if (e.host.kind !== "cidr" || e.ports !== null) {
        throw err(`network.bind_addrs[${i}]`, `${JSON.stringify(e.text)}: expected an IP address or CIDR without a port`);
      }
    });
  }
  cfg.maxConnections = integer(network, "network", "max_connections", cfg.maxConnections, 0);
  cfg.maxBandwidthMbps = number(network, "network", "max_bandwidth_mbps", cfg.maxBandwidthMbps, false);
  cfg.connectionTimeoutSecs = number(network, "network", "connection_timeout_secs", cfg.connectionTimeoutSecs, true);

  // [limits]
  const L = cfg.limits;
  L.maxSessions = integer(limits, "limits", "max_sessions", L.maxSessions, 0);
  L.maxSessionsPerIp = integer(limits, "limits", "max_sessions_per_ip", L.maxSessionsPerIp, 0);
  // Memory bounds cannot be switched off, so 0 is not "unlimited" here.
  L.streamBufferBytes = integer(limits, "limits", "stream_buffer_bytes", L.streamBufferBytes, 1);
  L.maxMessageBytes = integer(limits, "limits", "max_message_bytes", L.maxMessageBytes, 1);
  L.idleTimeoutSecs = integer(limits, "limits", "idle_timeout_secs", L.idleTimeoutSecs, 0);

  // [tls]
  const ca = get(tls, "ca_file");
  if (ca !== undefined) {
    if (typeof ca !== "string" || ca === "") throw err("tls.ca_file", `expected a file path, got ${show(ca)}`);
    cfg.tls.caFile = resolvePath(dirname(source), ca);
  }

  // [pool]
  cfg.pool.idleSecs = number(pool, "pool", "idle_secs", cfg.pool.idleSecs, false);
  cfg.pool.perKey = integer(pool, "pool", "per_key", cfg.pool.perKey, 1);
  const warm = stringArray(pool, "pool", "warm");
  if (warm !== undefined) {
    warm.forEach((w, i) => {
      const key = `pool.warm[${i}]`;
      const hp = splitHostPort(w);
      if (hp === null) throw err(key, `${JSON.stringify(w)}: expected "host:port" (IPv6 as "[::1]:443")`);
      // Warming is the server connecting on its own: a target the policy
      // refuses would be an SSRF the operator wrote down. The pool must still
      // check resolved addresses at connect time.
      const d = hp.isIp ? decideAddress(cfg.rules, null, hp.host, hp.port) : decideName(cfg.rules, hp.host, hp.port);
      if (!d.allowed) throw err(key, `${JSON.stringify(w)} is refused by the policy: ${d.reason}`);
    });
    cfg.pool.warm = [...warm];
  }

  // [server]
  const origins = stringArray(server, "server", "allowed_origins");
  if (origins !== undefined) {
    cfg.server.allowedOrigins = origins.map((o, i) => {
      const key = `server.allowed_origins[${i}]`;
      const hint = `expected an origin like "https://app.example.com" (scheme://host[:port], no path)`;
      let u: URL;
      try {
        u = new URL(o);
      } catch {
        throw err(key, `${JSON.stringify(o)}: ${hint}`);
      }
      if ((u.protocol !== "http:" && u.protocol !== "https:") || u.origin.toLowerCase() !== o.toLowerCase()) {
        throw err(key, `${JSON.stringify(o)}: ${hint}`);
      }
      return u.origin;
    });
  }
  // [wisp]
  const wisp = table("wisp");
  const users = get(wisp, "users");
  if (users !== undefined) {
    if (!isTable(users)) throw err("wisp.users", `expected a table of user = "password", got ${show(users)}`);
    for (const [user, password] of Object.entries(users)) {
      if (typeof password !== "string" || password === "") throw err(`wisp.users.${user}`, `expected a non-empty password string, got ${show(password)}`);
      if (user === "" || user.length > 255 || password.length > 255) throw err(`wisp.users.${user}`, "user names and passwords are at most 255 bytes (Wisp's field sizes)");
      cfg.wisp.users.set(user, password);
    }
  }
  const motd = get(wisp, "motd");
  if (motd !== undefined) {
    if (typeof motd !== "string") throw err("wisp.motd", `expected a string, got ${show(motd)}`);
    cfg.wisp.motd = motd;
  }
  const proxies = stringArray(server, "server", "trusted_proxies");
  if (proxies !== undefined) {
    cfg.server.trustedProxies = proxies.map((p, i) => {
      const key = `server.trusted_proxies[${i}]`;
      let e: Entry;
      try {
        e = parseEntry(p);
      } catch (x) {
        throw err(key, (x as Error).message);
      }
      if (e.host.kind !== "cidr" || e.ports !== null) throw err(key, `${JSON.stringify(p)}: expected an IP address or CIDR without a port`);
      return e;
    });
  }
  return cfg;
}

export function loadPolicyFile(path: string): PolicyConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new PolicyFileError(path, null, `cannot read: ${(e as Error).message}`);
  }
  const cfg = parsePolicy(text, path);
  if (cfg.tls.caFile !== null && !existsSync(cfg.tls.caFile)) {
    throw new PolicyFileError(path, "tls.ca_file", `file not found: ${JSON.stringify(cfg.tls.caFile)}`);
  }
  return cfg;
}
