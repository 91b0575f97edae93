// Where a token travels on a WebSocket upgrade, and how to keep it out of log lines.
//
// Two forms, both needed because browsers cannot set an Authorization header on a WebSocket:
//   - the query parameter `token` (`/?token=…`, `/wisp/?token=…`, any endpoint);
//   - a subprotocol `wasmnet.bearer.<JWT>` offered next to a real one
//     (`Sec-WebSocket-Protocol: wasmnet, wasmnet.bearer.eyJ…`).
// The server must select a real subprotocol from `protocols` and never the bearer entry: a
// server that selects nothing gets the first offered value echoed back by the runtime, which
// would put the token in the 101 response.
//
// Decision: when a request carries more than one token (query and subprotocol, two query
// parameters, two bearer entries) and they are not all the same string, the request is refused
// (401). Picking one would make "which token counts" depend on an order a proxy may change,
// and a request that says two different things about who it is should not be guessed at.

export const BEARER_PROTOCOL_PREFIX = "wasmnet.bearer.";

export interface RequestToken {
  /** The token, or null when the request carries none (or carries conflicting ones). */
  token: string | null;
  /** The offered subprotocols in order, minus bearer entries: what the server may select from. */
  protocols: string[];
  /** Set when the request's tokens conflict: a 401 reason. */
  problem: string | null;
}

function isBearerProtocol(entry: string): boolean {
  return entry.length >= BEARER_PROTOCOL_PREFIX.length && entry.slice(0, BEARER_PROTOCOL_PREFIX.length).toLowerCase() === BEARER_PROTOCOL_PREFIX;
}

/** `Sec-WebSocket-Protocol` as a list (repeated headers arrive joined with ", "). */
export function splitProtocols(header: string | null): string[] {
  if (header === null) return [];
  return header
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "");
}

export function tokenFromRequest(req: Request): RequestToken {
  const offered = splitProtocols(req.headers.get("sec-websocket-protocol"));
  const protocols: string[] = [];
  const found: string[] = [];
  for (const p of offered) {
    if (isBearerProtocol(p)) found.push(p.slice(BEARER_PROTOCOL_PREFIX.length));
    else protocols.push(p);
  }
  let query: URLSearchParams;
  try {
    query = new URL(req.url).searchParams;
  } catch {
    query = new URLSearchParams();
  }
  found.push(...query.getAll("token"));
  if (found.length === 0) return { token: null, protocols, problem: null };
  if (found.some((t) => t !== found[0])) return { token: null, protocols, problem: "the request carries two different tokens" };
  return { token: found[0] as string, protocols, problem: null };
}

/** The request's path for a log line: no query (it may hold `token`), no fragment. */
export function redactedPath(url: string | URL): string {
  try {
    return new URL(url, "http://localhost").pathname;
  } catch {
    return "(unparsable url)";
  }
}

const BEARER_ANYWHERE = /wasmnet\.bearer\.[^\s,]*/gi;

/**
 * A `Sec-WebSocket-Protocol` value for a log line, bearer entries replaced. Matches the prefix
 * anywhere (not only at entry starts) so a malformed header cannot smuggle a token into the log.
 */
export function redactProtocols(header: string | null): string | null {
  if (header === null) return null;
  return header.replace(BEARER_ANYWHERE, `${BEARER_PROTOCOL_PREFIX}[redacted]`);
}
