// `struct sockaddr` bytes of the Emscripten program <-> addresses as text (docs/posix.md,
// "Addresses"). The family is a little-endian u16 (the program's own byte order); port and
// address are in network byte order. Decoding never throws; it reports the errno a C program
// expects for a bad family or length. Browser-safe: no Bun or Node APIs.
import { AF, ERRNO, SOCKADDR_IN6_BYTES, SOCKADDR_IN_BYTES, SOCKADDR_STORAGE_BYTES } from "./posix-constants.ts";

export interface SockaddrIn {
  family: "ipv4";
  /** Dotted quad. */
  address: string;
  port: number;
}

export interface SockaddrIn6 {
  family: "ipv6";
  /** RFC 5952 text (lower case, longest zero run as "::", "::ffff:a.b.c.d" for mapped IPv4). */
  address: string;
  port: number;
  flowinfo: number;
  scopeId: number;
}

export type Sockaddr = SockaddrIn | SockaddrIn6;

/** What an encoder accepts: an IPv6 address may leave out flowinfo and scope id (0). */
export type SockaddrInput = SockaddrIn | (Omit<SockaddrIn6, "flowinfo" | "scopeId"> & { flowinfo?: number; scopeId?: number });

export type SockaddrDecoded = { ok: true; addr: Sockaddr } | { ok: false; errno: number; reason: string };

/**
 * Reads a sockaddr the program passed with its addrlen (the whole `bytes`). Like Linux: an
 * addrlen shorter than the family's struct or longer than sockaddr_storage is EINVAL, a family
 * other than AF_INET / AF_INET6 is EAFNOSUPPORT; bytes past the family's struct are ignored.
 */
export function decodeSockaddr(bytes: Uint8Array): SockaddrDecoded {
  if (bytes.length < 2) return { ok: false, errno: ERRNO.EINVAL, reason: `address of ${bytes.length} bytes has no family` };
  if (bytes.length > SOCKADDR_STORAGE_BYTES) {
    return { ok: false, errno: ERRNO.EINVAL, reason: `addrlen ${bytes.length} is larger than sockaddr_storage (${SOCKADDR_STORAGE_BYTES})` };
  }
  const family = bytes[0]! | (bytes[1]! << 8);
  const port = (bytes[2]! << 8) | bytes[3]!;
  if (family === AF.INET) {
    if (bytes.length < SOCKADDR_IN_BYTES) return { ok: false, errno: ERRNO.EINVAL, reason: `AF_INET address of ${bytes.length} bytes, needs ${SOCKADDR_IN_BYTES}` };
    return { ok: true, addr: { family: "ipv4", address: formatIpv4(bytes.subarray(4, 8)), port } };
  }
  if (family === AF.INET6) {
    if (bytes.length < SOCKADDR_IN6_BYTES) return { ok: false, errno: ERRNO.EINVAL, reason: `AF_INET6 address of ${bytes.length} bytes, needs ${SOCKADDR_IN6_BYTES}` };
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return {
      ok: true,
      addr: {
        family: "ipv6",
        address: formatIpv6(bytes.subarray(8, 24)),
        port,
        flowinfo: view.getUint32(4, false),
        scopeId: view.getUint32(24, true),
      },
    };
  }
  return { ok: false, errno: ERRNO.EAFNOSUPPORT, reason: `address family ${family} is not AF_INET (2) or AF_INET6 (10)` };
}

/** The sockaddr bytes for an address: 16 bytes for IPv4, 28 for IPv6. Null for an invalid address or port. */
export function encodeSockaddr(addr: SockaddrInput): Uint8Array | null {
  if (!Number.isInteger(addr.port) || addr.port < 0 || addr.port > 0xffff) return null;
  if (addr.family === "ipv4") {
    const ip = parseIpv4(addr.address);
    if (!ip) return null;
    const out = new Uint8Array(SOCKADDR_IN_BYTES);
    out[0] = AF.INET;
    out[2] = addr.port >>> 8;
    out[3] = addr.port & 0xff;
    out.set(ip, 4);
    return out;
  }
  const ip = parseIpv6(addr.address);
  if (!ip) return null;
  const out = new Uint8Array(SOCKADDR_IN6_BYTES);
  const view = new DataView(out.buffer);
  out[0] = AF.INET6;
  out[2] = addr.port >>> 8;
  out[3] = addr.port & 0xff;
  view.setUint32(4, (addr.flowinfo ?? 0) >>> 0, false);
  out.set(ip, 8);
  view.setUint32(24, (addr.scopeId ?? 0) >>> 0, true);
  return out;
}

/** The Sockaddr for an IP in text (either family, as Bun reports them) and a port; null if not an IP literal. */
export function sockaddrOf(address: string, port: number): Sockaddr | null {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) return null;
  const v4 = parseIpv4(address);
  if (v4) return { family: "ipv4", address: formatIpv4(v4), port };
  const v6 = parseIpv6(address);
  if (v6) return { family: "ipv6", address: formatIpv6(v6), port, flowinfo: 0, scopeId: 0 };
  return null;
}

export function formatIpv4(b: Uint8Array): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/** RFC 5952 text of 16 address bytes. */
export function formatIpv6(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  // ::ffff:a.b.c.d keeps an IPv4-mapped address recognisable.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return `::ffff:${formatIpv4(b.subarray(12, 16))}`;
  let bestAt = -1;
  let bestLen = 1; // a single zero group is not shortened
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestAt < 0) return hex.join(":");
  return `${hex.slice(0, bestAt).join(":")}::${hex.slice(bestAt + bestLen).join(":")}`;
}

/** Four bytes of a strict dotted quad (no leading zeros, which some parsers read as octal), or null. */
export function parseIpv4(text: string): Uint8Array | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

/** Sixteen bytes of an IPv6 literal (with "::" and an optional dotted IPv4 tail; no zone), or null. */
export function parseIpv6(text: string): Uint8Array | null {
  if (text.length < 2 || text.length > 45 || text.includes("%")) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const side = (s: string): number[] | null => {
    if (s === "") return [];
    const out: number[] = [];
    const parts = s.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseIpv4(p);
        if (!v4) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) {
        out.push(parseInt(p, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = side(halves[0]!);
  const tail = halves.length === 2 ? side(halves[1]!) : [];
  if (!head || !tail) return null;
  // A dotted tail is only valid at the very end.
  if (halves.length === 2 && halves[0]!.includes(".")) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const groups = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >>> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}
