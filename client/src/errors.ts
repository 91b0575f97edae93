// Errors the client rejects with. `code` is a protocol error code (docs/protocol.md#error-codes), `EPOLICY` for a policy refusal
// (`denied`), or one of the client's own codes below.
import type { ErrorCode } from "../../src/protocol/index.ts";

/**
 * Codes a {@link WasmnetError} can carry:
 * - the server's codes (docs/protocol.md#error-codes), e.g. `ECONNREFUSED`, `ETLS`, `ELIMIT`;
 * - `EPOLICY`: the server's policy refused the request (`denied`); the message names the rule;
 * - `ECLOSED`: the WebSocket closed (or `disconnect()` was called) before the operation finished,
 *   or the socket was already closed;
 * - `ENOTSUP`: the server did not negotiate a feature this call needs (e.g. `shutdown` without
 *   `half_close`).
 */
export type WasmnetErrorCode = ErrorCode | "EPOLICY" | "ECLOSED" | "ENOTSUP";

export class WasmnetError extends Error {
  /** Machine-readable cause, see {@link WasmnetErrorCode}. */
  readonly code: WasmnetErrorCode;
  /** The socket / request id the error is about, when there is one. */
  readonly id: number | undefined;

  constructor(code: WasmnetErrorCode, message: string, id?: number) {
    super(message);
    this.name = "WasmnetError";
    this.code = code;
    this.id = id;
  }
}
