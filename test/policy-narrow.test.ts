// A token's allow list narrows its profile and never widens it.
import { describe, expect, test } from "bun:test";
import {
  type Decision,
  type RuleSet,
  TOKEN_ALLOW_RULE,
  chooseAddress,
  compileRules,
  decideAddress,
  decideName,
  filterResolved,
  withTokenAllow,
} from "../src/policy/decide.ts";
import { TokenAllowError, parseTokenAllow } from "../src/policy/token-allow.ts";

const PROFILES: Record<string, RuleSet> = {
  DEFAULT: compileRules(["nonpublic", "*:25"], ["*"]),
  WEB: compileRules(["nonpublic"], ["*:80", "*:443"]),
  LOCKED: compileRules(["*"], ["api.example.com:443", "*.cdn.example:443", "140.82.112.0/20:443"]),
  INTERNAL: compileRules(["*:25"], ["10.1.0.0/16", "*.corp.example"]), // no nonpublic: the operator's choice
};

const DNS: Record<string, string[]> = {
  "api.example.com": ["93.184.215.14"],
  "example.com": ["2606:2800:21f:cb07:6820:80da:af6b:8b2c", "93.184.215.14"],
  "api.github.com": ["140.82.112.5"],
  "evil.example": ["127.0.0.1"],
  "rebind.example": ["127.0.0.1", "::ffff:127.0.0.1", "::1"],
  "mixed.example": ["140.82.112.5", "93.184.215.14", "10.0.0.1"],
  "x.a.cdn.example": ["140.82.113.9"],
  "x.b.cdn.example": ["140.82.113.10"],
  "db.corp.example": ["10.1.2.3"],
  "other.example": ["93.184.215.14"],
  "www.example.com": ["93.184.215.14"],
};

const narrow = (profile: string, token: string[] | null): RuleSet => withTokenAllow(PROFILES[profile]!, token === null ? null : parseTokenAllow(token));

/** What a session does for `connect host:port`: the name check, then the resolved addresses. */
function connect(rules: RuleSet, host: string, port: number): Decision & { via?: string } {
  const byName = decideName(rules, host, port);
  if (!byName.allowed || DNS[host] === undefined) return byName;
  const c = chooseAddress(rules, host, DNS[host]!, port);
  return c.addr === null ? c.decision : { ...c.decision, via: c.addr };
}

type Row = [what: string, profile: string, token: string[] | null, dest: string, port: number | null, allowed: boolean, rule: string, fragment?: string];

// dest: an IP literal is decided as an address; a name goes through connect() (or resolve when port is null).
const TABLE: Row[] = [
  // A token cannot reach what the profile's deny list refuses.
  ["token names loopback", "DEFAULT", ["127.0.0.1"], "127.0.0.1", 80, false, "nonpublic", "loopback"],
  ["token CIDR covers loopback, mapped address", "DEFAULT", ["127.0.0.0/8"], "::ffff:127.0.0.1", 80, false, "nonpublic"],
  ["token * toward loopback", "DEFAULT", ["*"], "127.0.0.1", 22, false, "nonpublic"],
  ["token nonpublic toward private", "DEFAULT", ["nonpublic"], "10.0.0.1", 80, false, "nonpublic"],
  ["token localhost name", "DEFAULT", ["localhost:6379"], "localhost", 6379, false, "nonpublic", "localhost name"],
  ["token name that resolves to loopback", "DEFAULT", ["evil.example:80"], "evil.example", 80, false, "nonpublic", "127.0.0.1 is loopback"],
  ["token name that resolves to loopback in three forms", "DEFAULT", ["*"], "rebind.example", 443, false, "nonpublic", "no address of rebind.example passes"],
  ["profile deny on a port wins over a token entry", "DEFAULT", ["*:25"], "8.8.8.8", 25, false, "*:25"],
  // A token cannot widen a port or a host.
  ["profile *:443, token *:22", "WEB", ["*:22"], "93.184.215.14", 22, false, "default", "no allow entry matches 93.184.215.14:22"],
  ["profile *:443, token *:22, by name", "WEB", ["*:22"], "api.example.com", 22, false, "default"],
  ["token * under deny-by-default", "LOCKED", ["*"], "8.8.8.8", 443, false, "default"],
  ["token * under deny-by-default, by name", "LOCKED", ["*"], "other.example", 443, false, "default"],
  ["token wildcard wider than the profile's name", "LOCKED", ["*.example.com"], "www.example.com", 443, false, "default"],
  ["token CIDR wider than the profile's", "INTERNAL", ["10.0.0.0/8"], "10.2.0.1", 80, false, "default"],
  // Within the profile, the token decides.
  ["token * is the profile", "LOCKED", ["*"], "api.example.com", 443, true, "api.example.com:443", 'token allow "*"'],
  ["same port as the profile", "WEB", ["*:443"], "93.184.215.14", 443, true, "*:443", 'token allow "*:443"'],
  ["other port of the profile", "WEB", ["*:443"], "93.184.215.14", 80, false, TOKEN_ALLOW_RULE, "no entry of the token's allow list matches 93.184.215.14:80"],
  ["nonpublic in a token narrows to nothing public", "DEFAULT", ["nonpublic"], "8.8.8.8", 53, false, TOKEN_ALLOW_RULE],
  ["wildcard: a subdomain", "DEFAULT", ["*.github.com:443"], "api.github.com", 443, true, "*", 'token allow "*.github.com:443"'],
  ["wildcard: not the bare name", "DEFAULT", ["*.github.com:443"], "github.com", 443, false, TOKEN_ALLOW_RULE],
  ["wildcard: not another port", "DEFAULT", ["*.github.com:443"], "api.github.com", 80, false, TOKEN_ALLOW_RULE],
  ["wildcard: not a look-alike", "DEFAULT", ["*.github.com"], "evilgithub.com", 443, false, TOKEN_ALLOW_RULE, "evilgithub.com:443"],
  ["wildcard inside the profile's wildcard", "LOCKED", ["*.a.cdn.example"], "x.a.cdn.example", 443, true, "*.cdn.example:443"],
  ["wildcard inside the profile's wildcard: a sibling", "LOCKED", ["*.a.cdn.example"], "x.b.cdn.example", 443, false, TOKEN_ALLOW_RULE],
  ["exact name: another name", "DEFAULT", ["api.example.com:443"], "other.example.com", 443, false, TOKEN_ALLOW_RULE, "other.example.com:443"],
  ["IPv4 CIDR: inside", "DEFAULT", ["140.82.112.0/20:443"], "140.82.113.5", 443, true, "*"],
  ["IPv4 CIDR: outside", "DEFAULT", ["140.82.112.0/20:443"], "140.82.128.1", 443, false, TOKEN_ALLOW_RULE],
  ["IPv4 CIDR: a name resolving inside", "DEFAULT", ["140.82.112.0/20:443"], "api.github.com", 443, true, "*"],
  ["IPv4 CIDR: a name resolving outside", "DEFAULT", ["140.82.112.0/20:443"], "api.example.com", 443, false, TOKEN_ALLOW_RULE, "api.example.com:443 (93.184.215.14)"],
  ["IPv6 CIDR: inside", "DEFAULT", ["[2606:4700::]/32:443"], "2606:4700::1111", 443, true, "*"],
  ["IPv6 CIDR: outside", "DEFAULT", ["2606:4700::/32"], "2001:4860::8888", 443, false, TOKEN_ALLOW_RULE],
  ["single IP, IPv4-mapped form", "DEFAULT", ["8.8.8.8:53"], "::ffff:8.8.8.8", 53, true, "*"],
  ["the first address passing both", "DEFAULT", ["93.184.215.0/24"], "example.com", 443, true, "*"],
  ["operator-allowed private range, narrowed", "INTERNAL", ["10.1.2.0/24"], "10.1.2.3", 80, true, "10.1.0.0/16"],
  ["operator-allowed private range, outside the token's", "INTERNAL", ["10.1.2.0/24"], "10.1.3.3", 80, false, TOKEN_ALLOW_RULE],
  ["operator-allowed name, token by address", "INTERNAL", ["10.1.2.0/24"], "db.corp.example", 5432, true, "10.1.0.0/16"],
  ["empty token list: nothing", "DEFAULT", [], "8.8.8.8", 53, false, TOKEN_ALLOW_RULE],
  ["no token: the profile alone", "DEFAULT", null, "8.8.8.8", 53, true, "*"],
  // resolve: port-less, so port-qualified allow and token entries permit the look-up.
  ["resolve a name a port-qualified token entry names", "DEFAULT", ["api.example.com:443"], "api.example.com", null, true, "*"],
  ["resolve a name no token entry could match: refused before the look-up", "DEFAULT", ["api.example.com:443"], "other.example.com", null, false, TOKEN_ALLOW_RULE],
  ["resolve under *:443 with token *:22 (connect is refused, see above)", "WEB", ["*:22"], "api.example.com", null, true, "*:80"],
  ["resolve keeps only addresses the token allows", "DEFAULT", ["140.82.112.0/20"], "mixed.example", null, true, "*", "dropped"],
  ["resolve of a name resolving to loopback", "DEFAULT", ["evil.example"], "evil.example", null, false, "nonpublic"],
];

function decide(rules: RuleSet, dest: string, port: number | null): Decision & { via?: string; addrs?: string[] } {
  const isIp = /^[0-9.]+$/.test(dest) || dest.includes(":");
  if (port === null) {
    const r = filterResolved(rules, dest, DNS[dest] ?? []);
    return { ...r.decision, addrs: r.addrs };
  }
  return isIp ? decideAddress(rules, null, dest, port) : connect(rules, dest, port);
}

describe("token narrowing table", () => {
  for (const [what, profile, token, dest, port, allowed, rule, fragment] of TABLE) {
    test(`${what}: ${profile} + ${JSON.stringify(token)} → ${dest}${port === null ? " (resolve)" : `:${port}`}`, () => {
      const d = decide(narrow(profile, token), dest, port);
      expect({ allowed: d.allowed, rule: d.rule }).toEqual({ allowed, rule });
      if (fragment !== undefined) expect(d.reason).toContain(fragment);
      // Whatever the token says, it is never more than the profile.
      if (d.allowed) expect(decide(PROFILES[profile]!, dest, port).allowed).toBe(true);
    });
  }

  test("resolve returns the addresses passing profile and token, nothing else", () => {
    const r = filterResolved(narrow("DEFAULT", ["140.82.112.0/20"]), "mixed.example", DNS["mixed.example"]!);
    expect(r.addrs).toEqual(["140.82.112.5"]);
    expect(r.decision.reason).toContain("no entry of the token's allow list matches mixed.example (93.184.215.14)");
    expect(r.decision.reason).toContain('deny "nonpublic"');
  });
  test("the connection goes to the first address passing both, in resolver order", () => {
    const c = chooseAddress(narrow("DEFAULT", ["93.184.215.0/24"]), "example.com", DNS["example.com"]!, 443);
    expect(c.addr).toBe("93.184.215.14");
  });
  test("IP literals given as names are decided as addresses, with the token", () => {
    expect(decideName(narrow("DEFAULT", ["8.8.8.8:53"]), "8.8.8.8", 53).allowed).toBe(true);
    expect(decideName(narrow("DEFAULT", ["8.8.8.8:53"]), "8.8.4.4", 53).rule).toBe(TOKEN_ALLOW_RULE);
    expect(decideName(narrow("DEFAULT", ["127.0.0.1"]), "127.1", 80).rule).toBe("nonpublic");
    expect(decideName(narrow("DEFAULT", ["127.0.0.1"]), "2130706433", 80).rule).toBe("nonpublic");
  });
  test("a refused name is refused by the name check, so it is never looked up", () => {
    const d = decideName(narrow("DEFAULT", ["api.example.com:443", "*.github.com"]), "exfil.attacker.example", 443);
    expect(d).toEqual({ allowed: false, code: "token", rule: TOKEN_ALLOW_RULE, reason: "no entry of the token's allow list matches exfil.attacker.example:443" });
  });
});

test("never wider than the profile, never wider than the token: every profile × token × destination", () => {
  const tokens = [[], ["*"], ["nonpublic"], ["*:22"], ["*:443"], ["127.0.0.1"], ["10.0.0.0/8"], ["*.example.com"], ["api.example.com:443"], ["140.82.112.0/20"], ["::/0"], ["0.0.0.0/0:1-65535"]];
  const dests: [string, number | null][] = [];
  for (const d of ["127.0.0.1", "::1", "10.1.2.3", "169.254.169.254", "8.8.8.8", "140.82.112.5", "2606:4700::1111", "localhost", ...Object.keys(DNS)]) {
    for (const p of [null, 22, 25, 80, 443]) dests.push([d, p]);
  }
  let checked = 0;
  for (const profile of Object.keys(PROFILES)) {
    for (const token of tokens) {
      // The token's list alone, as a profile with nothing denied.
      const tokenOnly = compileRules([], token);
      for (const [dest, port] of dests) {
        const d = decide(narrow(profile, token), dest, port);
        if (!d.allowed) continue;
        checked++;
        expect(decide(PROFILES[profile]!, dest, port).allowed).toBe(true);
        expect(decide(tokenOnly, dest, port).allowed).toBe(true);
      }
    }
  }
  expect(checked).toBeGreaterThan(50); // the loop exercised allowed cases, not just refusals
});

describe("parseTokenAllow", () => {
  test("entries as in the policy file", () => {
    expect(parseTokenAllow(["*.example.com:443", "10.0.0.0/8", "[2001:db8::1]:22", "*", "nonpublic"]).map((e) => e.host.kind)).toEqual([
      "wildcard",
      "cidr",
      "cidr",
      "any",
      "nonpublic",
    ]);
    expect(parseTokenAllow([])).toEqual([]);
  });
  const bad = (claim: unknown, message: string, index: number | null) => {
    let err: unknown;
    try {
      parseTokenAllow(claim);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TokenAllowError);
    expect((err as TokenAllowError).message).toBe(message);
    expect((err as TokenAllowError).index).toBe(index);
  };
  test("not a list", () => {
    bad("*.example.com:443", 'wasmnet.allow: expected an array of policy entries, got "*.example.com:443"', null);
    bad({ 0: "*" }, "wasmnet.allow: expected an array of policy entries, got object", null);
    bad(null, "wasmnet.allow: expected an array of policy entries, got null", null);
  });
  test("a bad entry is named by its index", () => {
    bad(["*:443", 443], "wasmnet.allow[1]: expected a string, got number", 1);
    bad(["*:443", "ok.example", "a.*.com"], 'wasmnet.allow[2]: bad entry "a.*.com": "*" is allowed only as the whole leftmost label, as in "*.example.com"', 2);
    bad(["127.1"], 'wasmnet.allow[0]: bad entry "127.1": "127.1" is a non-standard IPv4 form (it means 127.0.0.1); write the dotted quad', 0);
    bad(["*:0"], 'wasmnet.allow[0]: bad entry "*:0": bad port "0": 0 is outside 1-65535', 0);
    bad([""], "wasmnet.allow[0]: empty entry", 0);
    bad([["*"]], "wasmnet.allow[0]: expected a string, got an array", 0);
  });
  test("an oversized entry is refused without echoing it", () => {
    let err: unknown;
    try {
      parseTokenAllow(["a".repeat(10_000)]);
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).toBe("wasmnet.allow[0]: entry of 10000 characters is longer than any valid entry");
    // The longest valid entry still parses.
    const longest = `*.${Array.from({ length: 4 }, () => "a".repeat(62)).join(".")}.${"b"}:65535-65535`;
    expect(longest.length).toBe(267);
    expect(parseTokenAllow([longest])[0]!.host.kind).toBe("wildcard");
  });
});
