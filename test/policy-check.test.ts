import { describe, expect, test } from "bun:test";
import { UnknownProfileError, checkDestinations, formatPolicy } from "../src/policy/check.ts";
import { defaultPolicy, parsePolicy, unrestrictedPolicy } from "../src/policy/load.ts";
import { parseTokenAllow } from "../src/policy/token-allow.ts";

const DNS: Record<string, string[]> = {
  "example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
  "api.github.com": ["140.82.112.5"],
  "github.com": ["140.82.112.3"],
  "rebind.example": ["10.0.0.1", "::1"],
  "mixed.example": ["192.168.0.1", "8.8.8.8"],
};
const calls: string[] = [];
const resolve = async (name: string): Promise<string[]> => {
  calls.push(name);
  const a = DNS[name];
  if (a === undefined) throw new Error(`DNS_ENOTFOUND ${name}`);
  return a;
};

describe("formatPolicy", () => {
  test("defaults, one per line", () => {
    const lines = formatPolicy(defaultPolicy()).split("\n");
    expect(lines).toContain("source: built-in defaults");
    expect(lines).toContain('deny "nonpublic"');
    expect(lines).toContain('deny "*:25"');
    expect(lines).toContain('allow "*"');
    expect(lines).toContain("bind_ports: 3000-9999");
    expect(lines).toContain("max_connections: 50");
    expect(lines).toContain("max_bandwidth_mbps: 10");
    expect(lines).toContain("connection_timeout_secs: 30");
    expect(lines).toContain("limits.max_sessions: 1000");
    expect(lines).toContain("pool.idle_secs: 0 (pooling off)");
    expect(lines).toContain("server.allowed_origins: (any origin)");
  });
  test("shows how entries were read when that differs from the text", () => {
    const cfg = parsePolicy('[network]\ndeny = ["*"]\nallow = ["API.Example.com.:443", "[2001:db8::]/32:443"]\n', "p.toml");
    const out = formatPolicy(cfg);
    expect(out).toContain('allow "API.Example.com.:443" (read as api.example.com:443)');
    expect(out).toContain('allow "[2001:db8::]/32:443" (read as [2001:db8::/32]:443)');
    expect(out).toContain("source: p.toml");
  });
  test("unrestricted shows unlimited", () => {
    const out = formatPolicy(unrestrictedPolicy());
    expect(out).toContain("deny: (none)");
    expect(out).toContain("max_connections: 0 (unlimited)");
    expect(out).toContain("bind_ports: 1-65535");
  });
  test("empty allow list is called out", () => {
    expect(formatPolicy(parsePolicy("[network]\nallow = []\n", "p.toml"))).toContain("allow: (none: every destination is refused)");
  });
});

describe("checkDestinations", () => {
  test("default policy", async () => {
    calls.length = 0;
    const { lines, anyDenied } = await checkDestinations(
      defaultPolicy(),
      ["example.com:443", "rebind.example:80", "mixed.example:53", "[::1]:22", "127.1:80", "example.com:25", "localhost:6379", "nx.example:80", "nonsense", "[2606:4700::1111]:443"],
      resolve,
    );
    expect(anyDenied).toBe(true);
    expect(lines).toHaveLength(10);
    expect(lines[0]).toBe('allowed example.com:443 via 93.184.215.14 [resolved: 93.184.215.14, 2606:2800:21f:cb07:6820:80da:af6b:8b2c]: rule "*": allow "*": example.com:443 (93.184.215.14) matches');
    expect(lines[1]).toStartWith("denied  rebind.example:80 [resolved: 10.0.0.1, ::1]: rule \"nonpublic\": no address of rebind.example passes");
    expect(lines[2]).toStartWith("allowed mixed.example:53 via 8.8.8.8");
    expect(lines[3]).toBe('denied  [::1]:22: rule "nonpublic": deny "nonpublic": ::1 is loopback (::1/128)');
    expect(lines[4]).toBe('denied  127.0.0.1:80: rule "nonpublic": deny "nonpublic": 127.0.0.1 is loopback (127.0.0.0/8)');
    expect(lines[5]).toStartWith('denied  example.com:25 (not resolved): rule "*:25"');
    expect(lines[6]).toStartWith('denied  localhost:6379 (not resolved): rule "nonpublic"');
    expect(lines[7]).toBe("denied  nx.example:80: resolution failed: DNS_ENOTFOUND nx.example");
    expect(lines[8]).toStartWith("denied  nonsense: not a HOST:PORT");
    expect(lines[9]).toStartWith("allowed [2606:4700::1111]:443");
    // names refused by name are never looked up
    expect(calls).not.toContain("localhost");
    expect(calls.filter((c) => c === "example.com")).toHaveLength(1);
  });
  test("deny-by-default: unlisted names are refused without a look-up", async () => {
    calls.length = 0;
    const cfg = parsePolicy('[network]\ndeny = ["nonpublic", "*"]\nallow = ["*.github.com:443"]\n', "p.toml");
    const r = await checkDestinations(cfg, ["api.github.com:443", "github.com:443", "api.github.com:80"], resolve);
    expect(r.lines[0]).toStartWith('allowed api.github.com:443 via 140.82.112.5 [resolved: 140.82.112.5]: rule "*.github.com:443"');
    expect(r.lines[1]).toBe('denied  github.com:443 (not resolved): rule "default": no allow entry matches github.com:443');
    expect(r.lines[2]).toStartWith("denied  api.github.com:80 (not resolved)");
    expect(r.anyDenied).toBe(true);
    expect(calls).toEqual(["api.github.com"]);
  });
  test("all allowed", async () => {
    const r = await checkDestinations(defaultPolicy(), ["example.com:443", "8.8.8.8:53"], resolve);
    expect(r.anyDenied).toBe(false);
  });
  test("no destinations", async () => {
    expect(await checkDestinations(defaultPolicy(), [], resolve)).toEqual({ lines: [], anyDenied: false });
  });
});

const PROFILED = `
[network]
deny = ["nonpublic", "*:25"]
[limits]
max_sessions_per_identity = 5
[auth]
audience = "wasmnet"
hs256_secret_file = "secret.key"
[cluster]
redis = "redis://default:hunter2@127.0.0.1:6379/0"

[profiles.web.network]
allow = ["*:443"]
[profiles.web.limits]
max_sessions_per_identity = 2
max_bytes_per_day = 1000000

[profiles.gh.network]
deny = ["*"]
allow = ["*.github.com:443"]
`;

describe("under a profile and a token's allow list", () => {
  const cfg = parsePolicy(PROFILED, "/srv/p.toml");
  test("formatPolicy lists the profiles at the top level and shows a profile's effective settings", () => {
    const top = formatPolicy(cfg).split("\n");
    expect(top).toContain("profiles: web, gh");
    expect(top).toContain('allow "*"');
    expect(top).toContain("limits.max_sessions_per_identity: 5");
    expect(top).toContain("auth.audience: wasmnet");
    expect(top).toContain("auth.hs256_secret_file: /srv/secret.key");
    expect(top).toContain("auth.issuers: (any)");
    expect(top).toContain("cluster.on_redis_error: local");
    const web = formatPolicy(cfg, { profile: "web" }).split("\n");
    expect(web).toContain("profile: web (the top level, with [profiles.web] tables over it)");
    expect(web).toContain('deny "nonpublic"');
    expect(web).toContain('allow "*:443"');
    expect(web).not.toContain('allow "*"');
    expect(web).toContain("limits.max_sessions_per_identity: 2");
    expect(web).toContain("limits.max_bytes_per_day: 1000000");
    expect(web).toContain("auth.audience: wasmnet");
    expect(web.some((l) => l.startsWith("profiles:"))).toBe(false);
  });
  test("formatPolicy never prints a Redis password", () => {
    const out = formatPolicy(cfg);
    expect(out).not.toContain("hunter2");
    expect(out).toContain("cluster.redis: redis://default:***@127.0.0.1:6379/0");
  });
  test("formatPolicy shows the token's entries", () => {
    const out = formatPolicy(cfg, { profile: "web", tokenAllow: parseTokenAllow(["API.example.com:443"]) });
    expect(out).toContain('token allow "API.example.com:443" (read as api.example.com:443)');
    expect(formatPolicy(cfg, { tokenAllow: [] })).toContain("token allow: (none: every destination is refused)");
  });
  test("an unknown profile is an error naming the known ones", async () => {
    expect(() => formatPolicy(cfg, { profile: "nope" })).toThrow(new UnknownProfileError('unknown profile "nope" (profiles: web, gh)'));
    expect(() => formatPolicy(defaultPolicy(), { profile: "web" })).toThrow('unknown profile "web" (the file defines no profiles)');
    await expect(checkDestinations(cfg, ["example.com:443"], resolve, { profile: "nope" })).rejects.toThrow(UnknownProfileError);
  });
  test("checkDestinations decides under the profile", async () => {
    const r = await checkDestinations(cfg, ["example.com:443", "example.com:80", "127.0.0.1:443"], resolve, { profile: "web" });
    expect(r.lines[0]).toStartWith('allowed example.com:443 via 93.184.215.14 [resolved: 93.184.215.14, 2606:2800:21f:cb07:6820:80da:af6b:8b2c]: rule "*:443"');
    expect(r.lines[1]).toStartWith('denied  example.com:80 (not resolved): rule "default": no allow entry matches example.com:80');
    expect(r.lines[2]).toStartWith('denied  127.0.0.1:443: rule "nonpublic"');
    const top = await checkDestinations(cfg, ["example.com:80"], resolve);
    expect(top.anyDenied).toBe(false);
  });
  test("checkDestinations narrows by the token and refuses names no entry could match before looking them up", async () => {
    calls.length = 0;
    const tokenAllow = parseTokenAllow(["api.github.com:443", "127.0.0.1"]);
    const r = await checkDestinations(cfg, ["api.github.com:443", "github.com:443", "127.0.0.1:443", "api.github.com:22"], resolve, { profile: "gh", tokenAllow });
    expect(r.lines[0]).toBe(
      'allowed api.github.com:443 via 140.82.112.5 [resolved: 140.82.112.5]: rule "*.github.com:443": allow "*.github.com:443": api.github.com is a subdomain of github.com on port 443; token allow "api.github.com:443": name api.github.com matches on port 443',
    );
    expect(r.lines[1]).toBe('denied  github.com:443 (not resolved): rule "default": no allow entry matches github.com:443');
    expect(r.lines[2]).toBe('denied  127.0.0.1:443: rule "default": no allow entry matches 127.0.0.1:443');
    expect(r.lines[3]).toStartWith('denied  api.github.com:22 (not resolved): rule "default"');
    const byName = parseTokenAllow(["api.github.com:443"]);
    const t = await checkDestinations(cfg, ["example.com:443", "api.github.com:443"], resolve, { profile: "web", tokenAllow: byName });
    expect(t.lines[0]).toBe('denied  example.com:443 (not resolved): rule "token allow": no entry of the token\'s allow list matches example.com:443');
    expect(t.lines[1]).toStartWith("allowed api.github.com:443 via 140.82.112.5");
    expect(calls).toEqual(["api.github.com", "api.github.com"]);
  });
});
