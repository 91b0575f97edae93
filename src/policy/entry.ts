// One policy entry: `*`, `nonpublic`, an IP or CIDR, a host name or `*.suffix`
// wildcard, each optionally followed by `:port` or `:lo-hi` (IPv6 in brackets).
// Parsing is strict on purpose: a rule that silently means something other
// than what the operator wrote is an SSRF hole with a config file's blessing.
import ipaddr from "ipaddr.js";
import { type IP, isValidHostname, normalizeName } from "./address.ts";
import { PortError, type PortRange, formatPortRange, parsePortRange } from "./ports.ts";

export type HostPattern =
  | { kind: "any" }
  | { kind: "nonpublic" }
  | { kind: "cidr"; net: IP; bits: number } // a single IP is /32 or /128
  | { kind: "name"; name: string }
  | { kind: "wildcard"; suffix: string }; // ".github.com": strict subdomains only

export interface Entry {
  text: string; // exactly as written, for reasons and audit lines
  host: HostPattern;
  ports: PortRange | null; // null: every port
}

export class PolicyEntryError extends Error {
  override name = "PolicyEntryError";
  constructor(
    readonly entry: string,
    detail: string,
  ) {
    super(detail);
  }
}

export function parseEntry(text: string): Entry {
  const fail = (detail: string): never => {
    throw new PolicyEntryError(text, detail);
  };
  if (text === "") fail("empty entry");
  if (/\s/.test(text)) fail(`bad entry ${JSON.stringify(text)}: contains whitespace`);
  if (!/^[A-Za-z0-9_.*:/[\]-]+$/.test(text)) {
    fail(`bad entry ${JSON.stringify(text)}: unexpected characters (IDN names must be written in xn-- form)`);
  }

  const { hostText, portText } = splitEntry(text, fail);
  let ports: PortRange | null = null;
  if (portText !== null) {
    try {
      ports = parsePortRange(portText);
    } catch (e) {
      fail(`bad entry ${JSON.stringify(text)}: ${(e as PortError).message}`);
    }
  }
  return { text, host: parseHost(text, hostText, fail), ports };
}

function splitEntry(text: string, fail: (d: string) => never): { hostText: string; portText: string | null } {
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close === -1) fail(`bad entry ${JSON.stringify(text)}: missing "]"`);
    const inner = text.slice(1, close);
    let rest = text.slice(close + 1);
    let hostText = inner;
    // Both "[2001:db8::]/32:443" and "[2001:db8::/32]:443" are accepted.
    const prefix = /^\/([^:]*)/.exec(rest);
    if (prefix) {
      if (inner.includes("/")) fail(`bad entry ${JSON.stringify(text)}: two prefix lengths`);
      hostText = `${inner}/${prefix[1]}`;
      rest = rest.slice(prefix[0].length);
    }
    if (!hostText.includes(":")) fail(`bad entry ${JSON.stringify(text)}: brackets are only for IPv6 addresses`);
    if (rest === "") return { hostText, portText: null };
    if (!rest.startsWith(":")) fail(`bad entry ${JSON.stringify(text)}: unexpected ${JSON.stringify(rest)} after "]"`);
    return { hostText, portText: rest.slice(1) };
  }
  const first = text.indexOf(":");
  if (first === -1) return { hostText: text, portText: null };
  // Two or more colons without brackets: an IPv6 address or CIDR, whole. Its
  // last group would be indistinguishable from a port, so none is taken.
  if (text.indexOf(":", first + 1) !== -1) return { hostText: text, portText: null };
  return { hostText: text.slice(0, first), portText: text.slice(first + 1) };
}

function parseHost(text: string, host: string, fail: (d: string) => never): HostPattern {
  const q = JSON.stringify(text);
  if (host === "") fail(`bad entry ${q}: missing host`);
  if (host === "*") return { kind: "any" };
  if (host.toLowerCase() === "nonpublic") return { kind: "nonpublic" };
  if (host.includes(":") || host.includes("/") || ipaddr.isValid(host)) return parseAddress(text, host, fail);
  if (host.includes("*")) {
    if (!host.startsWith("*.") || host.indexOf("*", 1) !== -1) {
      fail(`bad entry ${q}: "*" is allowed only as the whole leftmost label, as in "*.example.com"`);
    }
    const suffix = normalizeName(host.slice(2));
    if (suffix === "") fail(`bad entry ${q}: wildcard without a domain`);
    if (!isValidHostname(suffix)) fail(`bad entry ${q}: "${suffix}" is not a valid host name`);
    return { kind: "wildcard", suffix: `.${suffix}` };
  }
  const name = normalizeName(host);
  if (!isValidHostname(name)) {
    const numeric = /^[0-9.]+\.?$|^0x/i.test(host);
    fail(
      numeric
        ? `bad entry ${q}: "${host}" is neither a dotted-quad IPv4 address nor a host name`
        : `bad entry ${q}: "${host}" is not a valid host name`,
    );
  }
  return { kind: "name", name };
}

function parseAddress(text: string, host: string, fail: (d: string) => never): HostPattern {
  const q = JSON.stringify(text);
  const slash = host.indexOf("/");
  const ipText = slash === -1 ? host : host.slice(0, slash);
  if (ipText.includes("%")) fail(`bad entry ${q}: zone ids ("%...") are not allowed`);
  const v4 = !ipText.includes(":");
  if (v4 && !ipaddr.IPv4.isValidFourPartDecimal(ipText)) {
    if (ipaddr.isValid(ipText)) {
      fail(
        `bad entry ${q}: "${ipText}" is a non-standard IPv4 form (it means ${ipaddr.process(ipText).toString()}); write the dotted quad`,
      );
    }
    fail(`bad entry ${q}: "${ipText}" is not an IPv4 address`);
  }
  if (!v4 && !ipaddr.IPv6.isValid(ipText)) fail(`bad entry ${q}: "${ipText}" is not an IPv6 address`);
  const max = v4 ? 32 : 128;
  let bits = max;
  if (slash !== -1) {
    const p = host.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(p) || Number(p) > max) {
      fail(`bad CIDR ${JSON.stringify(host)}: prefix length must be 0-${max}`);
    }
    bits = Number(p);
  }
  let net: IP = v4 ? ipaddr.IPv4.parse(ipText) : ipaddr.IPv6.parse(ipText);
  // Addresses are matched in canonical form, where ::ffff:a.b.c.d is IPv4, so
  // a mapped entry is rewritten the same way or it could never match.
  if (net.kind() === "ipv6" && (net as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
    net = (net as ipaddr.IPv6).toIPv4Address();
    bits -= 96;
  }
  const network = networkAddress(net, bits);
  if (network.toString() !== net.toString()) {
    // "192.168.1.0/16" is almost always a typo for /24; refuse to guess.
    fail(`bad CIDR ${JSON.stringify(host)}: host bits are set (the network is ${network.toString()}/${bits})`);
  }
  return { kind: "cidr", net, bits };
}

function networkAddress(ip: IP, bits: number): IP {
  const bytes = ip.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    bytes[i] &= (0xff << (8 - keep)) & 0xff;
  }
  return ipaddr.fromByteArray(bytes);
}

/** Canonical rendering of an entry (used in `policy check` output). */
export function formatEntry(e: Entry): string {
  let host: string;
  switch (e.host.kind) {
    case "any":
      host = "*";
      break;
    case "nonpublic":
      host = "nonpublic";
      break;
    case "name":
      host = e.host.name;
      break;
    case "wildcard":
      host = `*${e.host.suffix}`;
      break;
    case "cidr": {
      const full = e.host.net.kind() === "ipv4" ? 32 : 128;
      host = e.host.bits === full ? e.host.net.toString() : `${e.host.net.toString()}/${e.host.bits}`;
      if (e.ports && e.host.net.kind() === "ipv6") host = `[${host}]`;
      break;
    }
  }
  return e.ports ? `${host}:${formatPortRange(e.ports)}` : host;
}
