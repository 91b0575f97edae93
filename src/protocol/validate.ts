// Semantic checks shared by both codecs, so JSON and binary requests are held to one standard.
import { MAX_ID } from "./constants.ts";
import type { Request } from "./messages.ts";

/** Longest address or name a request may carry: a DNS name is at most 253 characters. */
export const MAX_ADDR_CHARS = 253 + 2 + 45; // name, or a bracketed IPv6 literal with a zone

export function isValidId(id: unknown): id is number {
  return typeof id === "number" && Number.isInteger(id) && id >= 1 && id <= MAX_ID;
}

function portProblem(port: number, allowZero: boolean): string | null {
  const lo = allowZero ? 0 : 1;
  if (!Number.isInteger(port) || port < lo || port > 65535) return `port must be an integer ${lo}-65535, got ${port}`;
  return null;
}

function addrProblem(addr: string, what = "addr"): string | null {
  if (addr.length === 0) return `${what} is empty`;
  if (addr.length > MAX_ADDR_CHARS) return `${what} is longer than ${MAX_ADDR_CHARS} characters`;
  // Control characters and spaces never belong in a host; rejecting them keeps logs honest.
  if (/[\x00-\x20\x7f]/.test(addr)) return `${what} contains a control character or space`;
  return null;
}

/** Returns a human-readable problem, or null when the request is well-formed. */
export function requestProblem(req: Request): string | null {
  switch (req.op) {
    case "connect":
    case "connect_tls":
    case "connect_udp":
      return addrProblem(req.addr) ?? portProblem(req.port, false);
    case "bind":
      return addrProblem(req.addr) ?? portProblem(req.port, true);
    case "send_to":
      return addrProblem(req.addr) ?? portProblem(req.port, false);
    case "resolve":
      return addrProblem(req.name, "name");
    case "listen":
      if (!Number.isInteger(req.backlog) || req.backlog < 0 || req.backlog > 0xffffffff)
        return `backlog must be an integer 0-4294967295, got ${req.backlog}`;
      return null;
    case "hello":
      if (!Number.isInteger(req.version) || req.version < 1) return `hello version must be a positive integer`;
      return null;
    case "send":
    case "close":
    case "shutdown":
      return null;
  }
}
