// Errors the client rejects with. `code` is a protocol error code (docs/protocol.md#error-codes), `EPOLICY` for a policy refusal
// (`denied`), or one of the client's own codes below.
import type { ErrorCode } from "../../src/protocol/index.ts";

/**
 * Codes a {@link WasmnetError} can carry:
 * - the server's codes (docs/protocol.md#error-codes), e.g. `ECONNREFUSED`, `ETLS`, `ELIMIT`;
 * - `EPOLICY`: the server's policy refused the request (`denied`); the message names the rule;
 * - `EAUTH`: the server refused the session's token before the WebSocket opened (HTTP 401: missing
 *   when required, expired, wrong audience or issuer, bad signature, unknown profile, …; or 431:
 *   larger than 8 KiB). The message is the server's reason; `status` is 401 or 431;
 * - `EREFUSED`: the server refused the session before the WebSocket opened for another reason:
 *   `status` is the HTTP status (403 origin not allowed, 429 too many sessions for this address or
 *   identity, 503 shutting down, over its memory budget or `max_sessions`, 400 a bad path, …) and
 *   the message is the server's one-line reason;
 * - `ECLOSED`: the WebSocket closed (or `disconnect()` was called) before the operation finished,
 *   or the socket was already closed; also a WebSocket that failed before opening when the reason
 *   could not be learned (nothing listens, a network error, no `fetch` to ask with);
 * - `ENOTSUP`: the server did not negotiate a feature this call needs (e.g. `shutdown` without
 *   `half_close`).
 *
 * `EAUTH` and `EREFUSED` are learned by asking: a browser's WebSocket reports a failed handshake
 * without its status, so the client repeats the request once as a plain GET (README.md#browser-client).
 */
export type WasmnetErrorCode = ErrorCode | "EPOLICY" | "EAUTH" | "EREFUSED" | "ECLOSED" | "ENOTSUP";

export class WasmnetError extends Error {
  /** Machine-readable cause, see {@link WasmnetErrorCode}. */
  readonly code: WasmnetErrorCode;
  /** The socket / request id the error is about, when there is one. */
  readonly id: number | undefined;
  /** For `EAUTH` and `EREFUSED`: the HTTP status the server refused the session with. */
  readonly status: number | undefined;

  constructor(code: WasmnetErrorCode, message: string, id?: number, status?: number) {
    super(message);
    this.name = "WasmnetError";
    this.code = code;
    this.id = id;
    this.status = status;
  }
}
