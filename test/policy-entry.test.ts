import { describe, expect, test } from "bun:test";
import { PolicyEntryError, formatEntry, parseEntry } from "../src/policy/entry.ts";
import { PortError, formatPortList, parsePortList, parsePortRange, portAllowed } from "../src/policy/ports.ts";

describe("parseEntry accepts", () => {
  // [text, canonical rendering, host kind, ports]
  const cases: [string, string, string, string | null][] = [
    ["*", "*", "any", null],
    ["*:25", "*:25", "any", "25"],
    ["nonpublic", "nonpublic", "nonpublic", null],
    ["nonpublic:22", "nonpublic:22", "nonpublic", "22"],
    ["1.2.3.4", "1.2.3.4", "cidr", null],
    ["1.2.3.4:443", "1.2.3.4:443", "cidr", "443"],
    ["10.0.0.0/8", "10.0.0.0/8", "cidr", null],
    ["10.0.0.0/8:8000-8999", "10.0.0.0/8:8000-8999", "cidr", "8000-8999"],
    ["0.0.0.0/0", "0.0.0.0/0", "cidr", null],
    ["2001:db8::1", "2001:db8::1", "cidr", null],
    ["2001:DB8:0::1", "2001:db8::1", "cidr", null],
    ["2001:db8::/32", "2001:db8::/32", "cidr", null],
    ["[2001:db8::1]", "2001:db8::1", "cidr", null],
    ["[2001:db8::1]:443", "[2001:db8::1]:443", "cidr", "443"],
    ["[2001:db8::]/32:443", "[2001:db8::/32]:443", "cidr", "443"],
    ["[2001:db8::/32]:443", "[2001:db8::/32]:443", "cidr", "443"],
    ["[2001:db8::]/32", "2001:db8::/32", "cidr", null],
    ["::ffff:10.0.0.1", "10.0.0.1", "cidr", null],
    ["::ffff:10.0.0.0/104", "10.0.0.0/8", "cidr", null],
    ["api.example.com", "api.example.com", "name", null],
    ["API.Example.COM.", "api.example.com", "name", null],
    ["api.example.com:443", "api.example.com:443", "name", "443"],
    ["localhost", "localhost", "name", null],
    ["_svc._tcp.example.com", "_svc._tcp.example.com", "name", null],
    ["*.github.com", "*.github.com", "wildcard", null],
    ["*.example.com:443", "*.example.com:443", "wildcard", "443"],
    ["*.Example.com:1-65535", "*.example.com:1-65535", "wildcard", "1-65535"],
    ["NONPUBLIC", "nonpublic", "nonpublic", null],
  ];
  for (const [text, canon, kind, ports] of cases) {
    test(text, () => {
      const e = parseEntry(text);
      expect(e.text).toBe(text);
      expect(e.host.kind).toBe(kind as never);
      expect(e.ports === null ? null : `${e.ports.lo}${e.ports.hi === e.ports.lo ? "" : `-${e.ports.hi}`}`).toBe(ports);
      expect(formatEntry(e)).toBe(canon);
    });
  }
});

describe("parseEntry rejects", () => {
  // [text, fragment of the message]
  const cases: [string, string][] = [
    ["", "empty entry"],
    [" *", "whitespace"],
    ["a b", "whitespace"],
    ["*.", "wildcard without a domain"],
    ["a.*.com", "leftmost label"],
    ["*github.com", "leftmost label"],
    ["*.*.com", "leftmost label"],
    ["**", "leftmost label"],
    ["*.github.com*", "leftmost label"],
    ["10.0.0.0/33", "prefix length must be 0-32"],
    ["10.0.0.0/-1", "prefix length must be 0-32"],
    ["10.0.0.0/", "prefix length must be 0-32"],
    ["10.0.0.0/8/8", "prefix length must be 0-32"],
    ["2001:db8::/129", "prefix length must be 0-128"],
    ["10.1.0.0/8", "host bits are set (the network is 10.0.0.0/8)"],
    ["192.168.1.0/16", "host bits are set"],
    ["*:0", "outside 1-65535"],
    ["*:65536", "outside 1-65535"],
    ["*:99999", "outside 1-65535"],
    ["*:443-80", "443 is greater than 80"],
    ["*:", "empty port"],
    ["*:http", "not a port number"],
    ["*:8a", "not a port number"],
    ["*:-5", "not a port number"],
    ["example.com:1-", "not a port number"],
    ["127.1", "write the dotted quad"],
    ["2130706433", "it means 127.0.0.1"],
    ["0x7f000001", "write the dotted quad"],
    ["0177.0.0.1", "write the dotted quad"],
    ["1.2.3.04", "write the dotted quad"],
    ["127.1/8", "write the dotted quad"],
    ["999.1.1.1", "neither a dotted-quad"],
    ["1.2.3.4.5", "neither a dotted-quad"],
    ["2001:db8::1:443:x", "not an IPv6 address"],
    ["2001:db8::g", "not an IPv6 address"],
    ["[2001:db8::1", 'missing "]"'],
    ["[2001:db8::1]443", "unexpected"],
    ["[1.2.3.4]:80", "only for IPv6"],
    ["[2001:db8::/32]/32", "two prefix lengths"],
    ["fe80::1%eth0", "unexpected characters"],
    ["bücher.example", "xn--"],
    ["exa$mple.com", "unexpected characters"],
    ["-bad.example.com", "not a valid host name"],
    ["a..b", "not a valid host name"],
    [":443", "missing host"],
    ["/8", "not an IPv4 address"],
  ];
  for (const [text, msg] of cases) {
    test(JSON.stringify(text), () => {
      let err: unknown;
      try {
        parseEntry(text);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PolicyEntryError);
      expect((err as Error).message).toContain(msg);
    });
  }
});

describe("ports", () => {
  test("parsePortList forms", () => {
    expect(parsePortList("3000-9999")).toEqual([{ lo: 3000, hi: 9999 }]);
    expect(parsePortList("3000,8080")).toEqual([{ lo: 3000, hi: 3000 }, { lo: 8080, hi: 8080 }]);
    expect(parsePortList("80, 3000-3010")).toEqual([{ lo: 80, hi: 80 }, { lo: 3000, hi: 3010 }]);
    expect(formatPortList(parsePortList("80,3000-3010"))).toBe("80,3000-3010");
  });
  test("portAllowed", () => {
    const r = parsePortList("80,3000-3010");
    expect(portAllowed(r, 80)).toBe(true);
    expect(portAllowed(r, 3000)).toBe(true);
    expect(portAllowed(r, 3010)).toBe(true);
    expect(portAllowed(r, 3011)).toBe(false);
    expect(portAllowed(r, 81)).toBe(false);
  });
  for (const bad of ["", "0", "65536", "10-5", "80,,81", "abc", "80-", "1e3", "0x50", "80;81"]) {
    test(`parsePortList rejects ${JSON.stringify(bad)}`, () => expect(() => parsePortList(bad)).toThrow(PortError));
  }
  test("parsePortRange single", () => expect(parsePortRange("65535")).toEqual({ lo: 65535, hi: 65535 }));
});
