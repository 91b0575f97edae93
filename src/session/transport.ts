// How a session talks back to its client. Each protocol adapter (src/adapters/) implements it;
// the session never knows which protocol or codec is on the other side.
import type { Event } from "../protocol/messages.ts";

export interface Transport {
  /** Queue one event toward the client. */
  send(ev: Event): void;
  /** Bytes queued toward the client and not yet written to the network. */
  buffered(): number;
  /** Stop / restart reading the client (upload bandwidth budget in debt). */
  pauseInput(): void;
  resumeInput(): void;
}
