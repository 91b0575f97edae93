import { describe, expect, test } from "bun:test";
import { decideAddress, decideName } from "../src/policy/decide.ts";
import { type PolicyConfig, PolicyFileError, parsePolicy, policyFor } from "../src/policy/load.ts";

function fails(toml: string, ...fragments: string[]): void {
  let err: unknown;
  try {
    parsePolicy(toml, "policy.toml");
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(PolicyFileError);
  for (const f of fragments) expect((err as Error).message).toContain(f);
}

const FILE = `
[network]
deny = ["nonpublic", "*:25"]
max_connections = 20
[limits]
max_sessions = 100
max_sessions_per_identity = 5
idle_timeout_secs = 60
[auth]
audience = "wasmnet"
hs256_secret_file = "secret.key"
[pool]
warm = ["example.com:443"]

[profiles.free.network]
allow = ["*:80", "*:443"]
max_bandwidth_mbps = 1
[profiles.free.limits]
max_sessions_per_identity = 2
max_bytes_per_day = 1_000_000_000

[profiles.paid]
[profiles.paid.limits]
max_bandwidth_mbps_per_identity = 100
`;

const entryTexts = (cfg: PolicyConfig) => ({ deny: cfg.rules.deny.map((e) => e.text), allow: cfg.rules.allow.map((e) => e.text) });

describe("[profiles.NAME]", () => {
  const cfg = parsePolicy(FILE, "/etc/wasmnet/policy.toml");
  const free = cfg.profiles.get("free")!;
  const paid = cfg.profiles.get("paid")!;

  test("profiles are listed in file order", () => {
    expect([...cfg.profiles.keys()]).toEqual(["free", "paid"]);
  });
  test("a profile's own keys replace the top level's", () => {
    expect(entryTexts(free).allow).toEqual(["*:80", "*:443"]);
    expect(free.maxBandwidthMbps).toBe(1);
    expect(free.limits.maxSessionsPerIdentity).toBe(2);
    expect(free.limits.maxBytesPerDay).toBe(1_000_000_000);
    expect(paid.limits.maxBandwidthMbpsPerIdentity).toBe(100);
  });
  test("omitted keys come from the top level, not from the defaults", () => {
    expect(entryTexts(free).deny).toEqual(["nonpublic", "*:25"]);
    expect(free.maxConnections).toBe(20);
    expect(free.limits.idleTimeoutSecs).toBe(60);
    expect(paid.limits.maxSessionsPerIdentity).toBe(5);
    expect(entryTexts(paid)).toEqual(entryTexts(cfg));
  });
  test("server-wide tables and keys are the top level's in every profile", () => {
    for (const p of [free, paid]) {
      expect(p.limits.maxSessions).toBe(100);
      expect(p.auth).toEqual(cfg.auth);
      expect(p.pool).toEqual(cfg.pool);
      expect(p.server).toEqual(cfg.server);
      expect(p.cluster).toEqual(cfg.cluster);
      expect(p.source).toBe("/etc/wasmnet/policy.toml");
      expect(p.profiles.size).toBe(0);
    }
  });
  test("the top level is not changed by its profiles", () => {
    expect(entryTexts(cfg).allow).toEqual(["*"]);
    expect(cfg.maxBandwidthMbps).toBe(10);
    expect(cfg.limits.maxSessionsPerIdentity).toBe(5);
    expect(cfg.limits.maxBandwidthMbpsPerIdentity).toBe(0);
  });
  test("a profile is a policy: the decision functions take its rules", () => {
    expect(decideAddress(free.rules, null, "93.184.215.14", 443).allowed).toBe(true);
    expect(decideAddress(free.rules, null, "93.184.215.14", 22).allowed).toBe(false);
    expect(decideAddress(free.rules, null, "127.0.0.1", 443).rule).toBe("nonpublic");
    expect(decideName(free.rules, "mail.example.com", 25).rule).toBe("*:25");
    expect(decideAddress(cfg.rules, null, "93.184.215.14", 22).allowed).toBe(true);
  });
  test("policyFor: the top level for null, the profile by name, null for an unknown name", () => {
    expect(policyFor(cfg, null)).toBe(cfg);
    expect(policyFor(cfg, "free")).toBe(free);
    expect(policyFor(cfg, "nope")).toBeNull();
    expect(policyFor(cfg, "__proto__")).toBeNull();
  });
});

describe("inheritance does not depend on where the tables are in the file", () => {
  test("a profile written before the top-level tables still inherits them", () => {
    const cfg = parsePolicy(
      `
[profiles.locked.network]
allow = ["api.example.com:443"]

[network]
deny = ["*"]
max_connections = 3
`,
      "p.toml",
    );
    const locked = cfg.profiles.get("locked")!;
    expect(entryTexts(locked)).toEqual({ deny: ["*"], allow: ["api.example.com:443"] });
    expect(locked.maxConnections).toBe(3);
    expect(decideName(locked.rules, "other.example.com", 443).allowed).toBe(false);
  });
  test("an empty profile is the top level", () => {
    const cfg = parsePolicy('[network]\nallow = ["*:443"]\n[profiles.same]\n', "p.toml");
    expect({ ...cfg.profiles.get("same")! }).toEqual({ ...cfg, profiles: new Map() });
  });
  test("a profile may replace the deny list too (the operator's choice, as at the top level)", () => {
    const cfg = parsePolicy('[profiles.internal.network]\ndeny = ["*:25"]\nallow = ["10.1.0.0/16"]\n', "p.toml");
    expect(decideAddress(cfg.profiles.get("internal")!.rules, null, "10.1.2.3", 80).allowed).toBe(true);
    expect(decideAddress(cfg.rules, null, "10.1.2.3", 80).allowed).toBe(false);
  });
});

describe("mistakes inside a profile name the profile's key", () => {
  test("bad entry", () => fails('[profiles.free.network]\nallow = ["*:443", "a.*.com"]\n', 'policy.toml: profiles.free.network.allow[1]: bad entry "a.*.com"'));
  test("bad value", () => fails("[profiles.free.limits]\nmax_sessions_per_identity = -2\n", "profiles.free.limits.max_sessions_per_identity: must be at least 0, got -2"));
  test("unknown key", () => fails("[profiles.free.network]\nalow = []\n", "profiles.free.network.alow: unknown key"));
  test("unknown table", () => fails("[profiles.free.netwrk]\n", "profiles.free.netwrk: unknown table", "network, limits"));
  test("a key directly in the profile", () => fails('[profiles.free]\nallow = ["*"]\n', "profiles.free.allow: unknown key"));
  test("profiles do not nest", () => fails("[profiles.free.profiles.x]\n", "profiles.free.profiles: unknown table"));
  test.each(["auth", "cluster", "server", "pool", "wisp", "tls"])("[%s] is server-wide", (table) =>
    fails(`[profiles.free.${table}]\n`, `profiles.free.${table}: [${table}] holds for the whole server: set it at the top level, not in a profile`),
  );
  test.each(["max_sessions", "max_sessions_per_ip", "max_memory_mb", "max_message_bytes"])("limits.%s is server-wide", (key) =>
    fails(`[profiles.free.limits]\n${key} = 10\n`, `profiles.free.limits.${key}: holds for the whole server: set it in the top-level [limits], not in a profile`),
  );
  test("the top level's mistakes are still found first", () => fails('[network]\ndeny = ["x y"]\n[profiles.free]\n', "policy.toml: network.deny[0]"));
});

describe("profile names", () => {
  test("a-z, 0-9, _ and -, 1 to 64 characters", () => {
    const name = "a".repeat(64);
    expect(parsePolicy(`[profiles.${name}]\n[profiles.free_2-b]\n`, "p.toml").profiles.has(name)).toBe(true);
  });
  test.each([["Free"], ["a b"], ["a.b"], ["é"], ["a".repeat(65)], [""]])("%j is refused", (name) =>
    fails(`[profiles.${JSON.stringify(name)}]\n`, "profile names are 1-64 characters of a-z, 0-9,"),
  );
  test("profiles must be tables", () => {
    fails("profiles = 5\n", "policy.toml: profiles: expected tables [profiles.NAME], got 5");
    fails("[profiles]\nfree = 1\n", "policy.toml: profiles.free: expected a table [profiles.free], got 1");
  });
});
