// Server-side defaults in one place. Protocol wire constants live in src/protocol/constants.ts.

export const DEFAULT_HOST = "0.0.0.0";
export const DEFAULT_PORT = 9000;

/** Pause target reads while the WebSocket holds more than this toward the browser. */
export const WS_HIGH_WATERMARK = 1024 * 1024;
export const WS_LOW_WATERMARK = 256 * 1024;
/**
 * Bun drops messages (ws.send() → 0) past this; we pause long before, so reaching it means
 * something is wrong and the session is closed rather than losing data silently.
 */
export const WS_BACKPRESSURE_LIMIT = 64 * 1024 * 1024;
/**
 * Messages above max_message_bytes get an ELIMIT error and the session goes on; only messages
 * more than this above it make Bun close the WebSocket (1009). Bun must hold a message whole
 * before anyone sees it, so this is what a client can make the server hold per session with
 * a message it never finishes: kept small (it was 4 × max_message_bytes).
 */
export const HARD_MESSAGE_MARGIN = 64 * 1024;
export const DNS_TIMEOUT_MS = 5000;
/** TLS handshakes share connection_timeout_secs with the TCP connect. */
export const SHUTDOWN_GRACE_MS = 3000;
/** Server-assigned ids for accepted connections start here, far above what clients count to. */
export const SERVER_ID_BASE = 2 ** 52;
/** How long a stream closed by the client may take to flush its queued bytes to the target. */
export const CLOSE_FLUSH_MS = 10_000;
/** WebSocket keep-alive: Bun pings every half of this; a browser that stops answering is dropped. */
export const WS_IDLE_TIMEOUT_SECS = 120;
/** Per session: name look-ups (resolve, send_to by name) that may be in flight at once. */
export const MAX_LOOKUPS_IN_FLIGHT = 32;
/** Per session: resolved address → name pairs remembered for later connects to the address. */
export const MAX_RESOLVED_NAMES = 1024;
/**
 * Plain GET admission checks (how the browser client learns why a handshake was refused) per
 * client address: each costs a counters round trip (Redis, or the supervisor), so a flood of
 * them is answered 429 without one. The client sends one per failed WebSocket.
 */
export const ADMISSION_CHECKS_PER_SEC = 5;
export const ADMISSION_CHECK_BURST = 20;
