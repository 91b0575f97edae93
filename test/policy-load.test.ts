import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decideAddress } from "../src/policy/decide.ts";
import { defaultMaxMemoryMb } from "../src/policy/memory-budget.ts";
import { type PolicyConfig, PolicyFileError, defaultPolicy, loadPolicyFile, parsePolicy, unrestrictedPolicy } from "../src/policy/load.ts";

const EXAMPLE = join(import.meta.dir, "fixtures/policy.example.toml");

function fails(toml: string, ...fragments: string[]): void {
  failure(toml, ...fragments);
}

function failure(toml: string, ...fragments: string[]): PolicyFileError {
  let err: unknown;
  try {
    parsePolicy(toml, "policy.toml");
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(PolicyFileError);
  for (const f of fragments) expect((err as Error).message).toContain(f);
  return err as PolicyFileError;
}

describe("loading", () => {
  test("the original wasmnet example file loads unchanged and equals the defaults", () => {
    const cfg = loadPolicyFile(EXAMPLE);
    const d = defaultPolicy();
    expect(cfg.source).toBe(EXAMPLE);
    expect({ ...cfg, source: null } as PolicyConfig).toEqual(d);
  });
  test("defaults", () => {
    const d = defaultPolicy();
    expect(d.source).toBeNull();
    expect(d.rules.deny.map((e) => e.text)).toEqual(["nonpublic", "*:25"]);
    expect(d.rules.allow.map((e) => e.text)).toEqual(["*"]);
    expect(d.bindPorts).toEqual([{ lo: 3000, hi: 9999 }]);
    expect(d.bindPortsText).toBe("3000-9999");
    expect(d.bindAddrs).toEqual([]);
    expect(d.maxConnections).toBe(50);
    expect(d.maxBandwidthMbps).toBe(10);
    expect(d.connectionTimeoutSecs).toBe(30);
    expect(d.limits).toEqual({
      maxSessions: 1000,
      maxSessionsPerIp: 32,
      maxMemoryMb: defaultMaxMemoryMb(),
      streamBufferBytes: 1048576,
      maxMessageBytes: 1048576,
      idleTimeoutSecs: 300,
      maxSessionsPerIdentity: 0,
      maxConnectionsPerIdentity: 0,
      maxBandwidthMbpsPerIdentity: 0,
      maxBytesPerDay: 0,
    });
    expect(d.tls).toEqual({ caFile: null });
    expect(d.pool).toEqual({ idleSecs: 0, perKey: 8, warm: [] });
    expect(d.server).toEqual({ allowedOrigins: null, trustedProxies: [], workers: 1, drainSecs: 5 });
    expect(d.auth).toEqual({ required: false, audience: null, issuers: null, hs256SecretFile: null, jwksFile: null, leewaySecs: 30 });
    expect(d.cluster).toEqual({ redis: null, leaseSecs: 15, onRedisError: "local" });
    expect(d.profiles.size).toBe(0);
  });
  test("an empty file is the defaults", () => {
    expect({ ...parsePolicy("", "p.toml"), source: null } as PolicyConfig).toEqual(defaultPolicy());
  });
  test("defaultPolicy returns a fresh object each time", () => {
    const a = defaultPolicy();
    a.limits.maxSessions = 1;
    a.rules.deny.length = 0;
    expect(defaultPolicy().limits.maxSessions).toBe(1000);
    expect(defaultPolicy().rules.deny.length).toBe(2);
  });
  test("unrestrictedPolicy lifts destination and session limits, keeps memory bounds", () => {
    const u = unrestrictedPolicy();
    expect(decideAddress(u.rules, null, "127.0.0.1", 25).allowed).toBe(true);
    expect(u.maxConnections).toBe(0);
    expect(u.maxBandwidthMbps).toBe(0);
    expect(u.bindPorts).toEqual([{ lo: 1, hi: 65535 }]);
    expect(u.bindAddrs.map((e) => e.host.kind)).toEqual(["any"]);
    expect(u.limits.maxSessions).toBe(0);
    expect(u.limits.maxSessionsPerIp).toBe(0);
    expect(u.limits.streamBufferBytes).toBe(1048576);
    expect(u.limits.maxMessageBytes).toBe(1048576);
  });
  test("every table and key", () => {
    const cfg = parsePolicy(
      `
[network]
deny = ["*"]
allow = ["*.example.com:443", "[2606:4700::]/32:443"]
bind_ports = "80,3000-3010"
bind_addrs = ["192.168.1.10", "fd00::/8"]
max_connections = 0
max_bandwidth_mbps = 2.5
connection_timeout_secs = 7.5
[limits]
max_sessions = 10
max_sessions_per_ip = 2
max_memory_mb = 512
stream_buffer_bytes = 65536
max_message_bytes = 131072
idle_timeout_secs = 0
max_sessions_per_identity = 3
max_connections_per_identity = 20
max_bandwidth_mbps_per_identity = 1.5
max_bytes_per_day = 10_000_000_000
[tls]
ca_file = "certs/ca.pem"
[pool]
idle_secs = 30
per_key = 2
warm = ["api.example.com:443", "[2606:4700::1111]:443"]
[server]
allowed_origins = ["https://app.example.com", "http://localhost:5173"]
workers = "auto"
drain_secs = 2.5
[auth]
required = true
audience = "wasmnet"
issuers = ["https://app.example"]
hs256_secret_file = "keys/secret.key"
jwks_file = "/keys/public.jwks.json"
leeway_secs = 0
[cluster]
redis = "rediss://user:pw@redis.internal:6380/2"
lease_secs = 5
on_redis_error = "deny"
`,
      "/etc/wasmnet/policy.toml",
    );
    expect(cfg.rules.deny.map((e) => e.text)).toEqual(["*"]);
    expect(cfg.rules.allow.map((e) => e.text)).toEqual(["*.example.com:443", "[2606:4700::]/32:443"]);
    expect(cfg.bindPorts).toEqual([{ lo: 80, hi: 80 }, { lo: 3000, hi: 3010 }]);
    expect(cfg.bindAddrs.map((e) => e.text)).toEqual(["192.168.1.10", "fd00::/8"]);
    expect(cfg.maxConnections).toBe(0);
    expect(cfg.maxBandwidthMbps).toBe(2.5);
    expect(cfg.connectionTimeoutSecs).toBe(7.5);
    expect(cfg.limits).toEqual({
      maxSessions: 10,
      maxSessionsPerIp: 2,
      maxMemoryMb: 512,
      streamBufferBytes: 65536,
      maxMessageBytes: 131072,
      idleTimeoutSecs: 0,
      maxSessionsPerIdentity: 3,
      maxConnectionsPerIdentity: 20,
      maxBandwidthMbpsPerIdentity: 1.5,
      maxBytesPerDay: 10_000_000_000,
    });
    expect(cfg.tls.caFile).toBe("/etc/wasmnet/certs/ca.pem");
    expect(cfg.pool).toEqual({ idleSecs: 30, perKey: 2, warm: ["api.example.com:443", "[2606:4700::1111]:443"] });
    expect(cfg.server.allowedOrigins).toEqual(["https://app.example.com", "http://localhost:5173"]);
    expect(cfg.server.workers).toBe("auto");
    expect(cfg.server.drainSecs).toBe(2.5);
    expect(cfg.auth).toEqual({
      required: true,
      audience: "wasmnet",
      issuers: ["https://app.example"],
      hs256SecretFile: "/etc/wasmnet/keys/secret.key",
      jwksFile: "/keys/public.jwks.json",
      leewaySecs: 0,
    });
    expect(cfg.cluster).toEqual({ redis: "rediss://user:pw@redis.internal:6380/2", leaseSecs: 5, onRedisError: "deny" });
  });
  test("an empty allow list is kept (refuse everything), not replaced by the default", () => {
    const cfg = parsePolicy("[network]\nallow = []\n", "p.toml");
    expect(cfg.rules.allow).toEqual([]);
    expect(decideAddress(cfg.rules, null, "8.8.8.8", 53).allowed).toBe(false);
  });
});

describe("mistakes name the file, the key and the value", () => {
  test("TOML syntax error (with line and column)", () => fails("[network]\nmax_connections = = 3\n", "policy.toml:2:", "TOML syntax error"));
  test("duplicate key", () => fails("[network]\nmax_connections = 3\nmax_connections = 4\n", "policy.toml", "TOML syntax error"));
  test("unknown table", () => fails("[netwrk]\ndeny = []\n", "policy.toml: netwrk: unknown table"));
  test("unknown key", () => fails("[network]\nalow = [\"*\"]\n", "policy.toml: network.alow: unknown key", "allow"));
  test("top-level key outside a table", () => fails('deny = ["nonpublic"]\n', "policy.toml: deny: unknown key"));
  test("table given as a value", () => fails("network = 5\n", "policy.toml: network: expected a table", "5"));
  test("__proto__ keys are refused", () => fails('[network]\n__proto__ = 1\n', "policy.toml"));
  test("deny is not an array", () => fails('[network]\ndeny = "nonpublic"\n', "network.deny: expected an array of strings", '"nonpublic"'));
  test("non-string array element", () => fails('[network]\nallow = ["*", 443]\n', "network.allow[1]: expected a string, got 443"));
  test("bad CIDR", () =>
    fails('[network]\ndeny = ["nonpublic", "10.0.0.0/33"]\n', 'policy.toml: network.deny[1]: bad CIDR "10.0.0.0/33": prefix length must be 0-32'));
  test("bad port in an entry", () => fails('[network]\nallow = ["*:70000"]\n', 'network.allow[0]: bad entry "*:70000"', "70000"));
  test("bad pattern", () => fails('[network]\nallow = ["a.*.com"]\n', 'network.allow[0]: bad entry "a.*.com"'));
  test("non-strict IPv4 in an entry", () => fails('[network]\ndeny = ["127.1"]\n', "network.deny[0]", "write the dotted quad"));
  test("bind_ports of the wrong type", () => fails("[network]\nbind_ports = 8080\n", "network.bind_ports: expected a string", "8080"));
  test("bind_ports with a reversed range", () => fails('[network]\nbind_ports = "9999-3000"\n', "network.bind_ports", '"9999-3000"', "greater"));
  test("bind_ports with port 0", () => fails('[network]\nbind_ports = "0-100"\n', "network.bind_ports", "outside 1-65535"));
  test("bind_addrs with a host name", () => fails('[network]\nbind_addrs = ["example.com"]\n', "network.bind_addrs[0]", '"example.com"', "IP address or CIDR"));
  test("bind_addrs with a bad address", () => fails('[network]\nbind_addrs = ["10.0.0.300"]\n', "network.bind_addrs[0]", "10.0.0.300"));
  test("negative count", () => fails("[network]\nmax_connections = -1\n", "network.max_connections: must be at least 0, got -1"));
  test("fractional count", () => fails("[network]\nmax_connections = 1.5\n", "network.max_connections: expected an integer, got 1.5"));
  test("count as a string", () => fails('[limits]\nmax_sessions = "10"\n', 'limits.max_sessions: expected an integer, got "10"'));
  test("negative bandwidth", () => fails("[network]\nmax_bandwidth_mbps = -0.5\n", "network.max_bandwidth_mbps: must be 0 or more, got -0.5"));
  test("infinite bandwidth", () => fails("[network]\nmax_bandwidth_mbps = inf\n", "network.max_bandwidth_mbps: expected a number, got Infinity"));
  test("zero connection timeout", () => fails("[network]\nconnection_timeout_secs = 0\n", "network.connection_timeout_secs: must be greater than 0, got 0"));
  test("boolean where a number belongs", () => fails("[pool]\nidle_secs = true\n", "pool.idle_secs: expected a number, got true"));
  test("date where a number belongs", () => fails("[limits]\nidle_timeout_secs = 2024-01-01\n", "limits.idle_timeout_secs: expected an integer", "date"));
  test("zero memory bound", () => fails("[limits]\nstream_buffer_bytes = 0\n", "limits.stream_buffer_bytes: must be at least 1, got 0"));
  test("integer too large for a number", () => fails("[limits]\nmax_message_bytes = 9007199254740993\n", "policy.toml:2:", "TOML syntax error"));
  test("ca_file of the wrong type", () => fails("[tls]\nca_file = 5\n", "tls.ca_file: expected a file path, got 5"));
  test("ca_file that does not exist (loadPolicyFile)", () => {
    const dir = mkdtempSync(join(tmpdir(), "wasmnet-policy-"));
    const file = join(dir, "policy.toml");
    writeFileSync(file, '[tls]\nca_file = "missing.pem"\n');
    expect(() => loadPolicyFile(file)).toThrow(`${file}: tls.ca_file: file not found: "${join(dir, "missing.pem")}"`);
    writeFileSync(join(dir, "missing.pem"), "");
    expect(loadPolicyFile(file).tls.caFile).toBe(join(dir, "missing.pem"));
  });
  test("pool.per_key of 0", () => fails("[pool]\nper_key = 0\n", "pool.per_key: must be at least 1, got 0"));
  test("pool.warm without a port", () => fails('[pool]\nwarm = ["example.com"]\n', 'pool.warm[0]: "example.com": expected "host:port"'));
  test("pool.warm to a destination the policy refuses", () =>
    fails('[pool]\nwarm = ["example.com:443", "169.254.169.254:80"]\n', 'pool.warm[1]: "169.254.169.254:80" is refused by the policy', "cloud metadata"));
  test("pool.warm to a localhost name", () => fails('[pool]\nwarm = ["localhost:6379"]\n', "pool.warm[0]", "localhost"));
  test("allowed_origins not an origin", () =>
    fails('[server]\nallowed_origins = ["https://app.example.com/path"]\n', 'server.allowed_origins[0]: "https://app.example.com/path": expected an origin'));
  test("allowed_origins garbage", () => fails('[server]\nallowed_origins = ["app.example.com"]\n', "server.allowed_origins[0]", '"app.example.com"'));
  test("allowed_origins with a non-http scheme", () => fails('[server]\nallowed_origins = ["ftp://x.example"]\n', "server.allowed_origins[0]"));
  test("allowed_origins not an array", () => fails('[server]\nallowed_origins = "*"\n', "server.allowed_origins: expected an array of strings", '"*"'));
  test("unreadable file", () => expect(() => loadPolicyFile("/nonexistent/policy.toml")).toThrow("/nonexistent/policy.toml: cannot read"));
  test("the error carries file and key", () => {
    const e = failure('[network]\ndeny = ["x y"]\n');
    expect(e.file).toBe("policy.toml");
    expect(e.key).toBe("network.deny[0]");
  });
});

test("[server] trusted_proxies takes IPs and CIDRs, and names the bad entry", () => {
  const { parsePolicy } = require("../src/policy/load.ts") as typeof import("../src/policy/load.ts");
  const cfg = parsePolicy('[server]\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8"]', "p.toml");
  expect(cfg.server.trustedProxies.map((e) => e.text)).toEqual(["127.0.0.1", "10.0.0.0/8"]);
  expect(() => parsePolicy('[server]\ntrusted_proxies = ["proxy.example.com"]', "p.toml")).toThrow('p.toml: server.trusted_proxies[0]: "proxy.example.com": expected an IP address or CIDR without a port');
  expect(() => parsePolicy('[server]\ntrusted_proxies = ["10.0.0.0/33"]', "p.toml")).toThrow("server.trusted_proxies[0]");
});

test("a policy written for the original wasmnet (CIDR deny list, six [network] keys) loads unchanged", () => {
  const { loadPolicyFile } = require("../src/policy/load.ts") as typeof import("../src/policy/load.ts");
  const { decideAddress } = require("../src/policy/decide.ts") as typeof import("../src/policy/decide.ts");
  const cfg = loadPolicyFile(new URL("./fixtures/original-policy.toml", import.meta.url).pathname);
  expect(cfg.rules.deny.map((e) => e.text)).toEqual(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16"]);
  expect(cfg.maxConnections).toBe(50);
  expect(cfg.bindPorts).toEqual([{ lo: 3000, hi: 9999 }]);
  expect(decideAddress(cfg.rules, null, "127.0.0.1", 80).allowed).toBe(false);
  expect(decideAddress(cfg.rules, null, "10.1.2.3", 80).allowed).toBe(false);
  expect(decideAddress(cfg.rules, null, "8.8.8.8", 53).allowed).toBe(true);
});

test("[wisp] users and motd; bad passwords are named", () => {
  const { parsePolicy } = require("../src/policy/load.ts") as typeof import("../src/policy/load.ts");
  const cfg = parsePolicy('[wisp]\nusers = { alice = "s3cret", "bob.b" = "x" }\nmotd = "hi"', "w.toml");
  expect([...cfg.wisp.users]).toEqual([
    ["alice", { password: "s3cret", publicKey: null, profile: null }],
    ["bob.b", { password: "x", publicKey: null, profile: null }],
  ]);
  expect(cfg.wisp.motd).toBe("hi");
  expect(() => parsePolicy('[wisp]\nusers = { alice = 5 }', "w.toml")).toThrow("w.toml: wisp.users.alice: expected a non-empty password string, got 5");
  expect(() => parsePolicy('[wisp]\nusers = ["alice:x"]', "w.toml")).toThrow("wisp.users");
  expect(() => parsePolicy('[wisp]\npasswords = {}', "w.toml")).toThrow("wisp.passwords: unknown key");
});

describe("identity, server and cluster keys", () => {
  test("per-identity limits: 0 is unlimited, negatives and fractions where counts belong are refused", () => {
    const cfg = parsePolicy("[limits]\nmax_sessions_per_identity = 0\nmax_bytes_per_day = 0\n", "p.toml");
    expect(cfg.limits.maxSessionsPerIdentity).toBe(0);
    fails("[limits]\nmax_sessions_per_identity = -1\n", "limits.max_sessions_per_identity: must be at least 0, got -1");
    fails("[limits]\nmax_connections_per_identity = 2.5\n", "limits.max_connections_per_identity: expected an integer, got 2.5");
    fails("[limits]\nmax_bandwidth_mbps_per_identity = -1\n", "limits.max_bandwidth_mbps_per_identity: must be 0 or more, got -1");
    fails('[limits]\nmax_bytes_per_day = "10G"\n', 'limits.max_bytes_per_day: expected an integer, got "10G"');
  });
  test("max_memory_mb is a bound that cannot be switched off", () => {
    fails("[limits]\nmax_memory_mb = 0\n", "limits.max_memory_mb: must be at least 1, got 0");
    expect(parsePolicy("[limits]\nmax_memory_mb = 1\n", "p.toml").limits.maxMemoryMb).toBe(1);
    expect(unrestrictedPolicy().limits.maxMemoryMb).toBe(defaultPolicy().limits.maxMemoryMb);
  });
  test("[server] workers is a whole number of at least 1, or \"auto\"; drain_secs 0 or more", () => {
    expect(parsePolicy("[server]\nworkers = 4\n", "p.toml").server.workers).toBe(4);
    for (const bad of ["0", "2.5", '"many"', '"AUTO"', "-1", "true"]) fails(`[server]\nworkers = ${bad}\n`, "server.workers: expected a whole number of at least 1 or \"auto\"");
    expect(parsePolicy("[server]\ndrain_secs = 0\n", "p.toml").server.drainSecs).toBe(0);
    fails("[server]\ndrain_secs = -1\n", "server.drain_secs: must be 0 or more, got -1");
  });
  test("[auth] types", () => {
    fails('[auth]\nrequired = "yes"\n', 'auth.required: expected true or false, got "yes"');
    fails('[auth]\naudience = ""\n', 'auth.audience: expected a non-empty string, got ""');
    fails("[auth]\naudience = 5\n", "auth.audience: expected a non-empty string, got 5");
    fails('[auth]\nissuers = "https://app.example"\n', "auth.issuers: expected an array of strings");
    fails("[auth]\nissuers = []\n", "auth.issuers: an empty list would refuse every token");
    fails('[auth]\nissuers = ["https://a.example", ""]\n', "auth.issuers[1]: expected a non-empty issuer");
    fails("[auth]\nleeway_secs = -1\n", "auth.leeway_secs: must be at least 0, got -1");
    fails("[auth]\nleeway_secs = 0.5\n", "auth.leeway_secs: expected an integer, got 0.5");
    fails("[auth]\njwks_file = 1\n", "auth.jwks_file: expected a file path, got 1");
    fails("[auth]\nalgorithms = [\"HS256\"]\n", "auth.algorithms: unknown key");
  });
  test("[auth] audience is required with any key file; required needs a key file", () => {
    fails('[auth]\nhs256_secret_file = "s.key"\n', "auth.audience: required when hs256_secret_file or jwks_file is set");
    fails('[auth]\njwks_file = "k.json"\nrequired = true\n', "auth.audience: required");
    fails("[auth]\nrequired = true\n", "auth.required: true needs hs256_secret_file or jwks_file");
    fails('[auth]\nrequired = true\naudience = "wasmnet"\n', "auth.required: true needs");
    const ok = parsePolicy('[auth]\naudience = "wasmnet"\njwks_file = "k.json"\n', "/srv/wasmnet/policy.toml");
    expect(ok.auth).toEqual({ required: false, audience: "wasmnet", issuers: null, hs256SecretFile: null, jwksFile: "/srv/wasmnet/k.json", leewaySecs: 30 });
  });
  test("[auth] key files are resolved next to the policy file and must exist (loadPolicyFile)", () => {
    const dir = mkdtempSync(join(tmpdir(), "wasmnet-policy-"));
    const file = join(dir, "policy.toml");
    writeFileSync(file, '[auth]\nrequired = true\naudience = "wasmnet"\nhs256_secret_file = "secret.key"\njwks_file = "keys/public.jwks.json"\n');
    expect(() => loadPolicyFile(file)).toThrow(`${file}: auth.hs256_secret_file: file not found: "${join(dir, "secret.key")}"`);
    writeFileSync(join(dir, "secret.key"), "x".repeat(32));
    expect(() => loadPolicyFile(file)).toThrow(`${file}: auth.jwks_file: file not found: "${join(dir, "keys/public.jwks.json")}"`);
    mkdirSync(join(dir, "keys"));
    writeFileSync(join(dir, "keys/public.jwks.json"), '{"keys":[]}');
    const cfg = loadPolicyFile(file);
    expect(cfg.auth.hs256SecretFile).toBe(join(dir, "secret.key"));
    expect(cfg.auth.jwksFile).toBe(join(dir, "keys/public.jwks.json"));
  });
  test("[cluster] redis URL, lease_secs, on_redis_error", () => {
    expect(parsePolicy('[cluster]\nredis = "redis://127.0.0.1:6379"\n', "p.toml").cluster).toEqual({ redis: "redis://127.0.0.1:6379", leaseSecs: 15, onRedisError: "local" });
    expect(parsePolicy('[cluster]\nredis = "redis://[::1]:6379/0"\n', "p.toml").cluster.redis).toBe("redis://[::1]:6379/0");
    fails('[cluster]\nredis = "http://redis:6379"\n', 'cluster.redis: "http://redis:6379": scheme must be redis or rediss');
    fails('[cluster]\nredis = "redis:6379"\n', "cluster.redis", "missing host");
    fails('[cluster]\nredis = "redis://host:6379/zero"\n', "cluster.redis", "database number");
    fails('[cluster]\nredis = "redis://host:99999"\n', "cluster.redis: not a URL");
    fails('[cluster]\nredis = "redis://host/0?timeout=1"\n', "cluster.redis", "no query");
    fails("[cluster]\nredis = 6379\n", 'cluster.redis: expected a URL like "redis://host:6379/0", got 6379');
    fails("[cluster]\nlease_secs = 0\n", "cluster.lease_secs: must be at least 1, got 0");
    fails("[cluster]\nlease_secs = 1.5\n", "cluster.lease_secs: expected an integer, got 1.5");
    fails('[cluster]\non_redis_error = "fail"\n', 'cluster.on_redis_error: expected "local" or "deny", got "fail"');
  });
  test("a Redis password never appears in an error", () => {
    const e = failure('[cluster]\nredis = "http://user:hunter2@redis:6379"\n', "cluster.redis", "scheme");
    expect(e.message).not.toContain("hunter2");
    expect(e.message).toContain("***");
    const e2 = failure('[cluster]\nredis = "redis://:hunter2@host:6379/x"\n', "cluster.redis");
    expect(e2.message).not.toContain("hunter2");
    const e3 = failure('[cluster]\nredis = "redis://:hunter2@host:99999"\n', "cluster.redis");
    expect(e3.message).not.toContain("hunter2");
  });
});
