// Which protocol a WebSocket upgrade speaks, from its path (docs/protocol.md#endpoints): Wisp on
// the Wisp prefix, wsproxy on `<prefix>HOST:PORT`, Emscripten's POSIX sockets on `/posix/`, the
// wasmnet protocol everywhere else.
import { splitHostPort } from "../policy/address.ts";

export interface WsproxyTarget {
  host: string;
  port: number;
}

/** `HOST:PORT` (IPv6 in brackets, percent-encoding allowed) from one path segment; null if malformed. */
export function parseHostPortSegment(segment: string): WsproxyTarget | null {
  let s: string;
  try {
    s = decodeURIComponent(segment);
  } catch {
    return null;
  }
  const hp = splitHostPort(s);
  return hp && { host: hp.host, port: hp.port };
}

export const DEFAULT_WISP_PREFIX = "/wisp/";
export const DEFAULT_WSPROXY_PREFIX = "/ws/";
export const DEFAULT_POSIX_PATH = "/posix/";

export type WsRoute =
  | { kind: "wasmnet" }
  | { kind: "wisp" }
  | { kind: "wsproxy"; target: WsproxyTarget }
  | { kind: "posix" }
  | { kind: "bad"; why: string };

export interface RouteOptions {
  /** Wisp endpoint (default "/wisp/"); false turns Wisp off. */
  wispPrefix?: string | false;
  /** wsproxy endpoint prefix (default "/ws/"); false turns wsproxy off, bare /HOST:PORT included. */
  wsproxyPrefix?: string | false;
  /** Emscripten PROXY_POSIX_SOCKETS endpoint (default "/posix/", "/posix" too); false turns it off. */
  posixPath?: string | false;
}

/** "/x" and "x/" and "/x/" all mean "/x/". */
function normalizePrefix(p: string): string {
  let s = p.startsWith("/") ? p : "/" + p;
  if (!s.endsWith("/")) s += "/";
  return s;
}

export function makeRouter(o: RouteOptions = {}): (path: string) => WsRoute {
  const wisp = o.wispPrefix === false ? null : normalizePrefix(o.wispPrefix ?? DEFAULT_WISP_PREFIX);
  const wsproxy = o.wsproxyPrefix === false ? null : normalizePrefix(o.wsproxyPrefix ?? DEFAULT_WSPROXY_PREFIX);
  const wispBare = wisp && wisp !== "/" ? wisp.slice(0, -1) : null;
  const posix = o.posixPath === false ? null : normalizePrefix(o.posixPath ?? DEFAULT_POSIX_PATH);
  const posixBare = posix && posix !== "/" ? posix.slice(0, -1) : null;

  const target = (rest: string): WsRoute => {
    const t = rest.includes("/") ? null : parseHostPortSegment(rest);
    return t ? { kind: "wsproxy", target: t } : { kind: "bad", why: `wsproxy path must end in HOST:PORT, got "${rest}"` };
  };

  return (path) => {
    if (posix !== null && (path === posix || path === posixBare)) return { kind: "posix" };
    if (wisp !== null) {
      if (path === wisp || path === wispBare) return { kind: "wisp" };
      // Wisp servers serve wsproxy under the same prefix (wisp-js, wisp-server-python).
      if (wsproxy !== null && path.startsWith(wisp) && wisp !== "/") return target(path.slice(wisp.length));
    }
    if (wsproxy !== null) {
      if (path.startsWith(wsproxy) && wsproxy !== "/") return target(path.slice(wsproxy.length));
      // Bare /HOST:PORT: one segment with a colon. Anything else stays the wasmnet protocol.
      if (path.length > 1 && path.indexOf("/", 1) < 0 && path.includes(":")) return target(path.slice(1));
    }
    return { kind: "wasmnet" };
  };
}
