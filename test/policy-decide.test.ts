import { describe, expect, test } from "bun:test";
import ipaddr from "ipaddr.js";
import { canonicalIp, parseIp } from "../src/policy/address.ts";
import {
  ALLOW_ALL,
  DEFAULT_ALLOW,
  DEFAULT_DENY,
  type RuleSet,
  chooseAddress,
  compileRules,
  decideAddress,
  decideName,
  filterResolved,
} from "../src/policy/decide.ts";
import { NONPUBLIC_RANGES, nonpublicRange } from "../src/policy/nonpublic.ts";

const DEFAULT = compileRules(DEFAULT_DENY, DEFAULT_ALLOW);
const GH = compileRules(["nonpublic"], ["*.github.com"]);
const LOCKED = compileRules(["*"], ["api.example.com:443", "*.cdn.example:80-90", "203.0.114.0/24:443", "[2606:4700::]/32:443"]);
const PORTS = compileRules(["nonpublic", "*:25", "*:6000-6010", "10.0.0.0/8:22"], ["*"]);
const MIXED = compileRules(["nonpublic", "*.evil.com", "8.8.4.4", "2001:4860::/32"], ["*"]);
const INTERNAL = compileRules(["*:25"], ["10.1.2.0/24", "*.corp.example"]); // no nonpublic: operator's choice
const rulesets: Record<string, RuleSet> = { DEFAULT, GH, LOCKED, PORTS, MIXED, INTERNAL, ALLOW_ALL };

// [rules, requested name (null = IP literal), address as the client or resolver wrote it, port,
//  allowed, deciding rule, fragment of the reason]
type Row = [keyof typeof rulesets, string | null, string, number | null, boolean, string, string];

const rows: Row[] = [
  // public addresses, allowed by default
  ["DEFAULT", null, "8.8.8.8", 53, true, "*", "8.8.8.8:53 matches"],
  ["DEFAULT", null, "1.1.1.1", 443, true, "*", ""],
  ["DEFAULT", null, "2606:4700::1111", 443, true, "*", "[2606:4700::1111]:443"],
  ["DEFAULT", "example.com", "93.184.215.14", 443, true, "*", "example.com:443 (93.184.215.14)"],
  ["DEFAULT", null, "100.63.255.255", 80, true, "*", ""],
  ["DEFAULT", null, "100.128.0.0", 80, true, "*", ""],
  ["DEFAULT", null, "172.15.255.255", 80, true, "*", ""],
  ["DEFAULT", null, "172.32.0.0", 80, true, "*", ""],
  ["DEFAULT", null, "192.0.3.1", 80, true, "*", ""],
  ["DEFAULT", null, "198.20.0.1", 80, true, "*", ""],
  ["DEFAULT", null, "223.255.255.255", 80, true, "*", ""],
  ["DEFAULT", null, "2001:4860:4860::8888", 53, true, "*", ""],
  ["DEFAULT", null, "2001:1::1", 443, true, "*", ""], // just outside Teredo's /32
  ["DEFAULT", null, "::ffff:8.8.8.8", 53, true, "*", "8.8.8.8:53"],
  // every IPv4 nonpublic range
  ["DEFAULT", null, "0.0.0.0", 80, false, "nonpublic", "this network"],
  ["DEFAULT", null, "0.1.2.3", 80, false, "nonpublic", "this network"],
  ["DEFAULT", null, "10.0.0.1", 80, false, "nonpublic", "10.0.0.1 is private"],
  ["DEFAULT", null, "10.255.255.255", 80, false, "nonpublic", "private"],
  ["DEFAULT", null, "172.16.0.1", 80, false, "nonpublic", "private"],
  ["DEFAULT", null, "172.31.255.254", 80, false, "nonpublic", "private"],
  ["DEFAULT", null, "192.168.1.1", 80, false, "nonpublic", "private"],
  ["DEFAULT", null, "127.0.0.1", 80, false, "nonpublic", 'deny "nonpublic": 127.0.0.1 is loopback'],
  ["DEFAULT", null, "127.255.255.254", 80, false, "nonpublic", "loopback"],
  ["DEFAULT", null, "169.254.169.254", 80, false, "nonpublic", "link-local (cloud metadata)"],
  ["DEFAULT", null, "100.64.0.1", 80, false, "nonpublic", "CGNAT"],
  ["DEFAULT", null, "100.127.255.255", 80, false, "nonpublic", "CGNAT"],
  ["DEFAULT", null, "192.0.0.8", 80, false, "nonpublic", "IETF protocol assignments"],
  ["DEFAULT", null, "192.0.2.1", 80, false, "nonpublic", "documentation"],
  ["DEFAULT", null, "198.18.0.1", 80, false, "nonpublic", "benchmarking"],
  ["DEFAULT", null, "198.19.255.255", 80, false, "nonpublic", "benchmarking"],
  ["DEFAULT", null, "198.51.100.7", 80, false, "nonpublic", "documentation"],
  ["DEFAULT", null, "203.0.113.9", 80, false, "nonpublic", "documentation"],
  ["DEFAULT", null, "224.0.0.1", 80, false, "nonpublic", "multicast"],
  ["DEFAULT", null, "239.255.255.250", 1900, false, "nonpublic", "multicast"],
  ["DEFAULT", null, "240.0.0.1", 80, false, "nonpublic", "reserved"],
  ["DEFAULT", null, "255.255.255.255", 80, false, "nonpublic", "broadcast"],
  // every IPv6 nonpublic range
  ["DEFAULT", null, "::", 80, false, "nonpublic", "unspecified"],
  ["DEFAULT", null, "::1", 80, false, "nonpublic", "::1 is loopback"],
  ["DEFAULT", null, "::7f00:1", 80, false, "nonpublic", "IPv4-compatible"],
  ["DEFAULT", null, "::ffff:0:a00:1", 80, false, "nonpublic", "IPv4-translated"],
  ["DEFAULT", null, "fc00::1", 80, false, "nonpublic", "unique local"],
  ["DEFAULT", null, "fd12:3456::1", 80, false, "nonpublic", "unique local"],
  ["DEFAULT", null, "fe80::1", 80, false, "nonpublic", "link-local"],
  ["DEFAULT", null, "febf::1", 80, false, "nonpublic", "link-local"],
  ["DEFAULT", null, "fec0::1", 80, false, "nonpublic", "site-local"],
  ["DEFAULT", null, "ff02::1", 80, false, "nonpublic", "multicast"],
  ["DEFAULT", null, "64:ff9b::a00:1", 80, false, "nonpublic", "NAT64"],
  ["DEFAULT", null, "64:ff9b::808:808", 80, false, "nonpublic", "NAT64"], // even a public v4 inside: gateway-dependent
  ["DEFAULT", null, "64:ff9b:1::1", 80, false, "nonpublic", "NAT64 (local-use)"],
  ["DEFAULT", null, "2002:a00:1::", 80, false, "nonpublic", "6to4"],
  ["DEFAULT", null, "2002:7f00:1::1", 80, false, "nonpublic", "6to4"],
  ["DEFAULT", null, "2001::1", 80, false, "nonpublic", "Teredo"],
  ["DEFAULT", null, "2001:0:4136:e378:8000:63bf:3fff:fdd2", 80, false, "nonpublic", "Teredo"],
  ["DEFAULT", null, "2001:db8::1", 80, false, "nonpublic", "documentation"],
  ["DEFAULT", null, "100::1", 80, false, "nonpublic", "discard-only"],
  // IPv4-mapped and numeric forms, through canonicalIp first
  ["DEFAULT", null, "::ffff:10.0.0.1", 80, false, "nonpublic", "10.0.0.1 is private"],
  ["DEFAULT", null, "::ffff:127.0.0.1", 80, false, "nonpublic", "127.0.0.1 is loopback"],
  ["DEFAULT", null, "::ffff:7f00:1", 80, false, "nonpublic", "127.0.0.1 is loopback"],
  ["DEFAULT", null, "::ffff:a9fe:a9fe", 80, false, "nonpublic", "169.254.169.254 is link-local"],
  ["DEFAULT", null, "[::ffff:192.168.0.1]", 80, false, "nonpublic", "192.168.0.1 is private"],
  ["DEFAULT", null, "2130706433", 80, false, "nonpublic", "127.0.0.1 is loopback"],
  ["DEFAULT", null, "0x7f.1", 80, false, "nonpublic", "127.0.0.1 is loopback"],
  ["DEFAULT", null, "0x7f000001", 80, false, "nonpublic", "127.0.0.1 is loopback"],
  ["DEFAULT", null, "0177.0.0.1", 80, false, "nonpublic", "127.0.0.1 is loopback"],
  ["DEFAULT", null, "127.1", 80, false, "nonpublic", "127.0.0.1 is loopback"],
  ["DEFAULT", null, "0", 80, false, "nonpublic", "0.0.0.0 is this network"],
  ["DEFAULT", null, "0:0:0:0:0:0:0:1", 80, false, "nonpublic", "::1 is loopback"],
  ["DEFAULT", null, "[::]", 80, false, "nonpublic", "unspecified"],
  ["DEFAULT", null, "0xa9fea9fe", 80, false, "nonpublic", "cloud metadata"],
  // localhost by name, whatever the resolver said
  ["DEFAULT", "localhost", "127.0.0.1", 80, false, "nonpublic", "localhost is a localhost name"],
  ["DEFAULT", "LOCALHOST.", "::1", 80, false, "nonpublic", "localhost is a localhost name"],
  ["DEFAULT", "foo.localhost", "93.184.215.14", 80, false, "nonpublic", "foo.localhost is a localhost name"],
  ["DEFAULT", "localhost.example.com", "93.184.215.14", 80, true, "*", ""],
  ["DEFAULT", "notlocalhost", "93.184.215.14", 80, true, "*", ""],
  // a public-looking name resolving to a private address (DNS rebinding target)
  ["DEFAULT", "rebind.attacker.example", "10.0.0.5", 443, false, "nonpublic", "10.0.0.5 is private"],
  ["DEFAULT", "169.254.169.254.nip.io", "169.254.169.254", 80, false, "nonpublic", "cloud metadata"],
  // SMTP
  ["DEFAULT", null, "8.8.8.8", 25, false, "*:25", 'deny "*:25": matches everything on port 25'],
  ["DEFAULT", "smtp.example.com", "93.184.215.14", 25, false, "*:25", "port 25"],
  ["DEFAULT", null, "8.8.8.8", 24, true, "*", ""],
  ["DEFAULT", null, "8.8.8.8", 26, true, "*", ""],
  // wildcard boundaries
  ["GH", "api.github.com", "140.82.112.5", 443, true, "*.github.com", "api.github.com is a subdomain of github.com"],
  ["GH", "a.b.github.com", "140.82.112.5", 443, true, "*.github.com", ""],
  ["GH", "API.GitHub.com.", "140.82.112.5", 443, true, "*.github.com", ""],
  ["GH", "github.com", "140.82.112.5", 443, false, "default", "no allow entry matches github.com:443 (140.82.112.5)"],
  ["GH", "evilgithub.com", "140.82.112.5", 443, false, "default", ""],
  ["GH", "github.com.evil.com", "140.82.112.5", 443, false, "default", ""],
  ["GH", "api.github.co", "140.82.112.5", 443, false, "default", ""],
  ["GH", null, "140.82.112.5", 443, false, "default", "no allow entry matches 140.82.112.5:443"],
  ["GH", "internal.github.com", "10.0.0.1", 443, false, "nonpublic", "private"], // deny wins over allow
  // deny-by-default with a short allow list, port-qualified entries and ranges
  ["LOCKED", "api.example.com", "93.184.215.14", 443, true, "api.example.com:443", "name api.example.com matches on port 443"],
  ["LOCKED", "api.example.com", "93.184.215.14", 80, false, "default", ""],
  ["LOCKED", "www.example.com", "93.184.215.14", 443, false, "default", ""],
  ["LOCKED", "x.cdn.example", "93.184.215.14", 80, true, "*.cdn.example:80-90", ""],
  ["LOCKED", "x.cdn.example", "93.184.215.14", 90, true, "*.cdn.example:80-90", ""],
  ["LOCKED", "x.cdn.example", "93.184.215.14", 91, false, "default", ""],
  ["LOCKED", "x.cdn.example", "93.184.215.14", 79, false, "default", ""],
  ["LOCKED", null, "203.0.114.77", 443, true, "203.0.114.0/24:443", "203.0.114.77 is in 203.0.114.0/24 on port 443"],
  ["LOCKED", null, "203.0.115.1", 443, false, "default", ""],
  ["LOCKED", null, "203.0.114.77", 444, false, "default", ""],
  ["LOCKED", null, "2606:4700:1::1", 443, true, "[2606:4700::]/32:443", ""],
  ["LOCKED", null, "2606:4701::1", 443, false, "default", ""],
  ["LOCKED", null, "8.8.8.8", 53, false, "default", "no allow entry matches 8.8.8.8:53"],
  ["LOCKED", "api.example.com", "127.0.0.1", 443, true, "api.example.com:443", ""], // no nonpublic in this deny list
  ["PORTS", null, "8.8.8.8", 6000, false, "*:6000-6010", "on port 6000"],
  ["PORTS", null, "8.8.8.8", 6010, false, "*:6000-6010", ""],
  ["PORTS", null, "8.8.8.8", 6011, true, "*", ""],
  ["PORTS", null, "8.8.8.8", 22, true, "*", ""],
  // port null (resolve): port-qualified entries do not apply
  ["PORTS", null, "8.8.8.8", null, true, "*", "8.8.8.8 matches"],
  // no port (resolve): a name allowed on some port may be looked up
  ["LOCKED", "api.example.com", "93.184.215.14", null, true, "api.example.com:443", ""],
  ["LOCKED", "www.example.com", "93.184.215.14", null, false, "default", ""],
  // deny entries of every kind win over allow "*"
  ["MIXED", "x.evil.com", "93.184.215.14", 443, false, "*.evil.com", "x.evil.com is a subdomain of evil.com"],
  ["MIXED", "evil.com", "93.184.215.14", 443, true, "*", ""],
  ["MIXED", null, "8.8.4.4", 53, false, "8.8.4.4", "8.8.4.4 is in 8.8.4.4/32"],
  ["MIXED", null, "::ffff:8.8.4.4", 53, false, "8.8.4.4", ""],
  ["MIXED", null, "2001:4860:4860::8844", 53, false, "2001:4860::/32", ""],
  ["MIXED", "dns.google", "2001:4860:4860::8888", 53, false, "2001:4860::/32", ""],
  // an operator who dropped nonpublic gets exactly what they wrote
  ["INTERNAL", null, "10.1.2.3", 5432, true, "10.1.2.0/24", ""],
  ["INTERNAL", null, "10.1.3.3", 5432, false, "default", ""],
  ["INTERNAL", "db.corp.example", "10.9.9.9", 5432, true, "*.corp.example", ""],
  ["INTERNAL", "db.corp.example", "10.9.9.9", 25, false, "*:25", ""],
  ["ALLOW_ALL", null, "127.0.0.1", 22, true, "*", ""],
  ["ALLOW_ALL", "localhost", "::1", 25, true, "*", ""],
  // garbage from a resolver is never an address
  ["DEFAULT", "x.example", "not-an-ip", 80, false, "default", "is not an IP address"],
  ["DEFAULT", "x.example", "fe80::1%eth0", 80, false, "default", "is not an IP address"],
];

describe("decideAddress table", () => {
  for (const [rs, name, input, port, allowed, rule, reason] of rows) {
    test(`${rs}: ${name ?? "-"} ${input} :${port} -> ${allowed ? "allow" : "deny"} by ${rule}`, () => {
      const addr = canonicalIp(input) ?? input;
      const d = decideAddress(rulesets[rs]!, name, addr, port);
      expect(d.allowed).toBe(allowed);
      expect(d.rule).toBe(rule);
      expect(d.reason).toContain(reason);
    });
  }
  test("table size", () => expect(rows.length).toBeGreaterThanOrEqual(90));
  test("every nonpublic range has a denied row in the table", () => {
    for (const r of NONPUBLIC_RANGES) {
      const hit = rows.some(
        ([rs, , input, , allowed]) =>
          rs === "DEFAULT" && !allowed && canonicalIp(input) !== null && r.net.kind() === (canonicalIp(input)!.includes(":") ? "ipv6" : "ipv4") &&
          decideAddress(DEFAULT, null, canonicalIp(input)!, 80).reason.includes(`(${r.cidr})`),
      );
      expect(hit ? r.cidr : `missing ${r.cidr}`).toBe(r.cidr);
    }
  });
  test("nonpublicRange: asked again for the same address object, or for another object of the same address, the same answer", () => {
    for (const a of ["127.0.0.1", "::1", "fd00::1", "8.8.8.8", "2606:4700::1"]) {
      const ip = parseIp(a)!;
      const first = nonpublicRange(ip);
      expect(nonpublicRange(ip)).toBe(first);
      expect(nonpublicRange(ipaddr.process(a))).toBe(first);
      expect(first === null).toBe(a === "8.8.8.8" || a === "2606:4700::1");
    }
  });
  test("decideAddress canonicalises a non-canonical address itself", () => {
    expect(decideAddress(DEFAULT, null, "::ffff:127.0.0.1", 80).reason).toContain("127.0.0.1 is loopback");
    expect(decideAddress(DEFAULT, null, "2130706433", 80).allowed).toBe(false);
  });
});

describe("decideName (before DNS)", () => {
  const cases: [RuleSet, string, number | null, boolean, string][] = [
    [DEFAULT, "example.com", 443, true, "default"],
    [DEFAULT, "localhost", 443, false, "nonpublic"],
    [DEFAULT, "LOCALHOST.", 80, false, "nonpublic"],
    [DEFAULT, "foo.localhost", 80, false, "nonpublic"],
    [DEFAULT, "localhost", null, false, "nonpublic"],
    [DEFAULT, "smtp.example.com", 25, false, "*:25"],
    [DEFAULT, "smtp.example.com", null, true, "default"], // resolve: *:25 does not apply
    [MIXED, "a.evil.com", 443, false, "*.evil.com"],
    [MIXED, "evil.com", 443, true, "default"],
    [GH, "api.github.com", 443, true, "*.github.com"],
    [GH, "github.com", 443, false, "default"], // no address entry could allow it: no look-up
    [GH, "attacker-exfil.example", 443, false, "default"],
    [LOCKED, "api.example.com", 443, true, "api.example.com:443"],
    [LOCKED, "api.example.com", 80, false, "default"], // on port 80 only a name entry applies: no look-up
    [LOCKED, "other.example", 443, true, "default"], // a CIDR allow on 443 might match its addresses
    [DEFAULT, "127.1", 80, false, "nonpublic"], // IP literal passed as a name still gets the address check
    [ALLOW_ALL, "localhost", 80, true, "default"],
  ];
  for (const [rules, name, port, allowed, rule] of cases) {
    test(`${name}:${port} -> ${allowed ? "resolve" : "refuse"} (${rule})`, () => {
      const d = decideName(rules, name, port);
      expect(d.allowed).toBe(allowed);
      expect(d.rule).toBe(rule);
    });
  }
});

describe("chooseAddress", () => {
  test("private first then public: picks the public one", () => {
    const c = chooseAddress(DEFAULT, "dual.example", ["10.0.0.1", "::1", "93.184.215.14", "2606:4700::1111"], 443);
    expect(c.addr).toBe("93.184.215.14");
    expect(c.decision.allowed).toBe(true);
  });
  test("resolver order is kept (IPv6 first)", () => {
    expect(chooseAddress(DEFAULT, "v6.example", ["2606:4700::1111", "1.1.1.1"], 443).addr).toBe("2606:4700::1111");
  });
  test("returns the canonical form of the chosen address", () => {
    expect(chooseAddress(DEFAULT, "m.example", ["::ffff:8.8.8.8"], 53).addr).toBe("8.8.8.8");
  });
  test("all private: denied, naming every address", () => {
    const c = chooseAddress(DEFAULT, "internal.example", ["10.0.0.1", "fd00::1"], 443);
    expect(c.addr).toBeNull();
    expect(c.decision.allowed).toBe(false);
    expect(c.decision.rule).toBe("nonpublic");
    expect(c.decision.reason).toContain("no address of internal.example passes");
    expect(c.decision.reason).toContain("10.0.0.1 is private");
    expect(c.decision.reason).toContain("fd00::1 is unique local");
  });
  test("one denied address: its own reason", () => {
    const c = chooseAddress(DEFAULT, "one.example", ["127.0.0.1"], 443);
    expect(c.decision.reason).toBe('deny "nonpublic": 127.0.0.1 is loopback (127.0.0.0/8)');
  });
  test("no addresses", () => {
    const c = chooseAddress(DEFAULT, "empty.example", [], 443);
    expect(c.addr).toBeNull();
    expect(c.decision.reason).toContain("empty.example has no addresses");
  });
  test("name deny applies to every address", () => {
    expect(chooseAddress(MIXED, "a.evil.com", ["93.184.215.14", "1.1.1.1"], 443).addr).toBeNull();
  });
  test("garbage answers are skipped", () => {
    expect(chooseAddress(DEFAULT, "g.example", ["bogus", "127.1", "8.8.8.8"], 53).addr).toBe("8.8.8.8");
  });
});

describe("filterResolved", () => {
  test("keeps the passing addresses, canonical and de-duplicated", () => {
    const r = filterResolved(DEFAULT, "dual.example", ["10.0.0.1", "93.184.215.14", "::ffff:93.184.215.14", "2606:4700::1111", "::1"]);
    expect(r.addrs).toEqual(["93.184.215.14", "2606:4700::1111"]);
    expect(r.decision.allowed).toBe(true);
    expect(r.decision.reason).toContain("dropped");
  });
  test("port-qualified deny entries are ignored (*:25 does not block resolving)", () => {
    const r = filterResolved(PORTS, "mail.example", ["93.184.215.14"]);
    expect(r.addrs).toEqual(["93.184.215.14"]);
  });
  test("port-qualified allow entries do apply: a name allowed on some port may be resolved", () => {
    const r = filterResolved(LOCKED, "api.example.com", ["93.184.215.14"]);
    expect(r.addrs).toEqual(["93.184.215.14"]);
    expect(r.decision.rule).toBe("api.example.com:443");
    expect(filterResolved(LOCKED, "other.example.com", ["93.184.215.14"]).decision.allowed).toBe(false);
  });
  test("port-less allow entries still apply", () => {
    const rules = compileRules(["*"], ["*.example.org"]);
    expect(filterResolved(rules, "a.example.org", ["93.184.215.14"]).addrs).toEqual(["93.184.215.14"]);
  });
  test("all nonpublic: denied", () => {
    const r = filterResolved(DEFAULT, "intranet.example", ["192.168.0.10", "fe80::1"]);
    expect(r.addrs).toEqual([]);
    expect(r.decision.allowed).toBe(false);
    expect(r.decision.rule).toBe("nonpublic");
  });
  test("name refused by a name rule: denied without looking at addresses", () => {
    const r = filterResolved(DEFAULT, "localhost", ["93.184.215.14"]);
    expect(r.addrs).toEqual([]);
    expect(r.decision.reason).toContain("localhost is a localhost name");
  });
});

describe("compileRules", () => {
  test("defaults", () => {
    expect(DEFAULT_DENY).toEqual(["nonpublic", "*:25"]);
    expect(DEFAULT_ALLOW).toEqual(["*"]);
    expect(DEFAULT.deny.map((e) => e.text)).toEqual(["nonpublic", "*:25"]);
  });
  test("bad entries throw", () => expect(() => compileRules(["10.0.0.0/33"], [])).toThrow("prefix length must be 0-32"));
  test("deny = ['*'] alone is a no-op marker; an empty allow list refuses everything", () => {
    const d = decideAddress(compileRules(["*"], []), null, "8.8.8.8", 53);
    expect(d).toEqual({ allowed: false, code: "no_allow", rule: "default", reason: "no allow entry matches 8.8.8.8:53" });
  });
});
