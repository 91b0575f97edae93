import { describe, expect, test } from "bun:test";
import { canonicalIp, formatHostPort, isValidHostname, normalizeName, splitHostPort } from "../src/policy/address.ts";

describe("canonicalIp", () => {
  const cases: [string, string | null][] = [
    ["127.0.0.1", "127.0.0.1"],
    ["127.1", "127.0.0.1"],
    ["2130706433", "127.0.0.1"],
    ["0x7f000001", "127.0.0.1"],
    ["017700000001", "127.0.0.1"],
    ["0177.0.0.1", "127.0.0.1"],
    ["0x7f.1", "127.0.0.1"],
    ["1.2.3.04", "1.2.3.4"],
    ["::ffff:127.0.0.1", "127.0.0.1"],
    ["::ffff:7f00:1", "127.0.0.1"],
    ["[::ffff:10.0.0.1]", "10.0.0.1"],
    ["::1", "::1"],
    ["[::1]", "::1"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["::", "::"],
    ["0.0.0.0", "0.0.0.0"],
    ["64:ff9b::10.0.0.1", "64:ff9b::a00:1"],
    ["fe80::1%eth0", null],
    ["[fe80::1%25eth0]", null],
    ["[127.0.0.1]", null],
    ["[::1", null],
    ["127.0.0.1.", null],
    [" 127.0.0.1", null],
    ["4294967296", null],
    ["999.1.1.1", null],
    ["localhost", null],
    ["example.com", null],
    ["", null],
  ];
  for (const [input, want] of cases) {
    test(`${JSON.stringify(input)} -> ${want}`, () => expect(canonicalIp(input)).toBe(want));
  }
});

describe("normalizeName", () => {
  test("lower-cases and strips one trailing dot", () => {
    expect(normalizeName("API.Example.COM.")).toBe("api.example.com");
    expect(normalizeName("a.b..")).toBe("a.b.");
    expect(normalizeName("x")).toBe("x");
  });
});

describe("isValidHostname", () => {
  const good = ["example.com", "a", "localhost", "_sip._tcp.example.com", "xn--bcher-kva.example", "a-b.c-d.e", "127.0.0.1.nip.io", `${"a".repeat(63)}.com`];
  const bad = [
    "",
    "a..b",
    ".a",
    "-a.com",
    "a-.com",
    `${"a".repeat(64)}.com`,
    `${"abcdefghi.".repeat(25)}coma`, // 254 chars
    "exa mple.com",
    "bücher.example",
    "a/b",
    "1.2.3.4",
    "999.1.1.1",
    "4294967296",
    "0x100000000",
    "foo.0x7f",
    "a.b.c.",
  ];
  for (const n of good) test(`valid ${n.slice(0, 40)}`, () => expect(isValidHostname(n)).toBe(true));
  for (const n of bad) test(`invalid ${JSON.stringify(n.slice(0, 40))}`, () => expect(isValidHostname(n)).toBe(false));
});

describe("splitHostPort", () => {
  test("forms", () => {
    expect(splitHostPort("example.com:443")).toEqual({ host: "example.com", isIp: false, port: 443 });
    expect(splitHostPort("EXAMPLE.com.:80")).toEqual({ host: "example.com", isIp: false, port: 80 });
    expect(splitHostPort("[::1]:443")).toEqual({ host: "::1", isIp: true, port: 443 });
    expect(splitHostPort("127.1:22")).toEqual({ host: "127.0.0.1", isIp: true, port: 22 });
    expect(splitHostPort("[::ffff:127.0.0.1]:22")).toEqual({ host: "127.0.0.1", isIp: true, port: 22 });
  });
  test("rejects", () => {
    for (const s of ["::1:443", "example.com", "example.com:0", "example.com:65536", "a..b:1", "[::1]443", ":80", "x:8a"]) {
      expect(splitHostPort(s)).toBeNull();
    }
  });
  test("formatHostPort brackets IPv6", () => {
    expect(formatHostPort("::1", 443)).toBe("[::1]:443");
    expect(formatHostPort("1.2.3.4", 80)).toBe("1.2.3.4:80");
    expect(formatHostPort("a.com", null)).toBe("a.com");
  });
});
