// What the Wisp and wsproxy adapters share: a WebSocket whose reading is paused for more than
// one reason at once (the bandwidth limit, and data held beyond a stream's window), resumed
// only when every reason is gone.
import type { ServerWebSocket } from "bun";
import type { WsData } from "./ws-transport.ts";

export const PAUSE_BANDWIDTH = 1;
export const PAUSE_HELD = 2;

export abstract class GatedTransport {
  private pauseMask = 0;

  constructor(protected readonly ws: ServerWebSocket<WsData>) {}

  buffered(): number {
    return this.ws.getBufferedAmount();
  }
  pauseInput(): void {
    this.pause(PAUSE_BANDWIDTH);
  }
  resumeInput(): void {
    this.unpause(PAUSE_BANDWIDTH);
  }

  protected pause(bit: number): void {
    if (this.pauseMask === 0) this.ws.pause();
    this.pauseMask |= bit;
  }

  protected unpause(bit: number): void {
    if (!(this.pauseMask & bit)) return;
    this.pauseMask &= ~bit;
    if (this.pauseMask === 0 && this.ws.readyState === 1) this.ws.resume();
  }
}
