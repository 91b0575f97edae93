// Why did the WebSocket fail before it opened? A browser's WebSocket reports a refused handshake
// as a bare close (code 1006) and hides the HTTP status and body. The server answers a plain GET
// to a protocol endpoint with the same admission decision, without opening a session (README.md
// "Browser client"): the refusal's status and one-line reason, or 426 when it would admit the
// session. The GET carries no custom header, so a cross-origin page needs no CORS preflight;
// the server's refusals are readable from any origin.
//
// GET, except from a page on the server's own origin: a browser sends no Origin header with a
// same-origin GET, so a server with allowed_origins would answer "origin (none)" instead of the
// real reason. A POST always carries Origin (the same one the WebSocket sent), and the server
// answers any plain request to a protocol endpoint the same way.
import { WasmnetError } from "./errors.ts";

/** How long the question may take before the failure stays plain ECLOSED. */
const REFUSAL_QUERY_MS = 10_000;
/** Longest reason taken from a refusal's body. */
const MAX_REASON_CHARS = 300;

/**
 * The error a WebSocket that failed before opening stands for: `EAUTH` (401, 431), `EREFUSED`
 * (another 4xx or 5xx), or `closed` itself when the server cannot be asked or would admit the
 * session. Never throws.
 */
export async function whyRefused(
  fetchFn: typeof globalThis.fetch | null,
  url: string,
  token: string | undefined,
  closed: WasmnetError,
): Promise<WasmnetError> {
  const probe = fetchFn ? probeUrl(url, token) : null;
  if (!fetchFn || probe === null) return closed;
  const abort = typeof AbortController === "function" ? new AbortController() : null;
  const timer = abort ? setTimeout(() => abort.abort(), REFUSAL_QUERY_MS) : undefined;
  try {
    const res = await fetchFn(probe, {
      method: sameOrigin(probe) ? "POST" : "GET",
      credentials: "omit",
      cache: "no-store",
      // With the page's "no-referrer" policy a POST's Origin would be "null"; "origin" keeps it exact.
      referrerPolicy: "origin",
      signal: abort?.signal,
    });
    const reason = await refusalReason(res);
    if (res.status === 401 || res.status === 431) return new WasmnetError("EAUTH", reason, undefined, res.status);
    if (res.status >= 400 && res.status !== 426) return new WasmnetError("EREFUSED", reason, undefined, res.status);
    return new WasmnetError("ECLOSED", `${closed.message}; the server would admit this session (HTTP ${res.status}), so the WebSocket failed on the way`);
  } catch {
    return closed;
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

/** `url` with `token` added as the query parameter `token`. */
export function withToken(url: string, token: string): string {
  const u = new URL(url, baseHref());
  u.searchParams.append("token", token);
  return u.href;
}

function baseHref(): string | undefined {
  const loc = (globalThis as { location?: { href?: string } }).location;
  return typeof loc?.href === "string" ? loc.href : undefined;
}

/** Whether `url` is on the page's own origin (never outside a browser). */
function sameOrigin(url: string): boolean {
  const here = baseHref();
  if (here === undefined) return false;
  try {
    return new URL(here).origin === new URL(url).origin;
  } catch {
    return false;
  }
}

/** The session's URL as http(s), with the token as `?token=`; null when it is not a ws or http URL. */
export function probeUrl(url: string, token: string | undefined): string | null {
  let u: URL;
  try {
    u = new URL(url, baseHref());
  } catch {
    return null;
  }
  if (u.protocol === "ws:") u.protocol = "http:";
  else if (u.protocol === "wss:") u.protocol = "https:";
  else if (u.protocol !== "http:" && u.protocol !== "https:") return null;
  u.hash = "";
  // The same token as the WebSocket offered; the server refuses a request carrying two different ones.
  if (token !== undefined && !u.searchParams.getAll("token").includes(token)) u.searchParams.append("token", token);
  return u.href;
}

/**
 * The server's reason: the Bearer challenge's `error_description` (401), else the first line of a
 * plain-text body (every wasmnet refusal has one), else the status.
 */
async function refusalReason(res: Response): Promise<string> {
  const challenge = res.headers.get("www-authenticate");
  const described = challenge === null ? null : bearerDescription(challenge);
  if (described) return described;
  if ((res.headers.get("content-type") ?? "").toLowerCase().startsWith("text/plain")) {
    const line = (await res.text().catch(() => ""))
      .split("\n")
      .map((l) => l.trim())
      .find((l) => l !== "");
    if (line) return line.length > MAX_REASON_CHARS ? `${line.slice(0, MAX_REASON_CHARS)}…` : line;
  }
  return `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`;
}

/** `error_description` from a `WWW-Authenticate: Bearer …` value: a quoted-string (backslash escapes undone) or a bare token. */
export function bearerDescription(challenge: string): string | null {
  const m = /(?:^|[\s,])error_description\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/i.exec(challenge);
  if (!m) return null;
  const text = m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : (m[2] as string);
  return text.trim() === "" ? null : text;
}
