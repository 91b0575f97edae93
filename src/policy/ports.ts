// Port lists and ranges shared by policy entries (`:443`, `:8000-8999`) and
// `[network] bind_ports` ("3000-9999", "3000,8080", "80,3000-3010").

export interface PortRange {
  lo: number;
  hi: number;
}

export class PortError extends Error {
  override name = "PortError";
}

const DIGITS = /^[0-9]{1,5}$/;

// Digits only: `parseInt` would happily read "80abc" or "0x50", and a rule that
// means something other than what the operator typed is worse than an error.
function parsePort(text: string, whole: string): number {
  if (!DIGITS.test(text)) {
    throw new PortError(`bad port "${whole}": "${text}" is not a port number`);
  }
  const n = Number(text);
  if (n < 1 || n > 65535) {
    throw new PortError(`bad port "${whole}": ${n} is outside 1-65535`);
  }
  return n;
}

/** One port (`443`) or one inclusive range (`8000-8999`). */
export function parsePortRange(text: string): PortRange {
  if (text === "") throw new PortError("bad port \"\": empty port");
  const dash = text.indexOf("-");
  if (dash === -1) {
    const p = parsePort(text, text);
    return { lo: p, hi: p };
  }
  const lo = parsePort(text.slice(0, dash), text);
  const hi = parsePort(text.slice(dash + 1), text);
  if (lo > hi) throw new PortError(`bad port range "${text}": ${lo} is greater than ${hi}`);
  return { lo, hi };
}

/** Comma-separated ports and ranges; spaces around commas are tolerated. */
export function parsePortList(text: string): PortRange[] {
  if (text.trim() === "") throw new PortError("empty port list");
  return text.split(",").map((part) => {
    const p = part.trim();
    if (p === "") throw new PortError(`bad port list "${text}": empty element`);
    return parsePortRange(p);
  });
}

export function portAllowed(ranges: readonly PortRange[], port: number): boolean {
  return ranges.some((r) => port >= r.lo && port <= r.hi);
}

export function formatPortRange(r: PortRange): string {
  return r.lo === r.hi ? String(r.lo) : `${r.lo}-${r.hi}`;
}

export function formatPortList(ranges: readonly PortRange[]): string {
  return ranges.map(formatPortRange).join(",");
}

export const ALL_PORTS: readonly PortRange[] = Object.freeze([{ lo: 1, hi: 65535 }]);
