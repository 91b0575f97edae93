// Connection pool (SPEC §7). Placeholder until the pooling work lands: never returns a hit.
import type { SessionContext } from "../session/context.ts";

export class ConnectionPool {
  constructor(readonly ctx: SessionContext) {}
  close(): void {}
}
