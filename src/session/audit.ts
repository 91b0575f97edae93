// One audit line per stream, UDP socket and listener when it ends (who, where, which rule,
// bytes each way, how long, why it ended): the record operators grep when something went wrong.
import type { Logger } from "../log.ts";

export interface AuditRecord {
  id: number;
  kind: string;
  name: string | null;
  addr: string;
  port: number;
  rule: string;
  up: number;
  down: number;
  started: number;
  reason: string;
}

/** Whose stream it was: the session, and the identity and profile it ran under. */
export interface AuditOwner {
  session: string;
  protocol: string;
  identity: string | null;
  profile: string | null;
}

export function writeAudit(log: Logger, owner: AuditOwner, a: AuditRecord): void {
  log.info("stream end", {
    session: owner.session,
    protocol: owner.protocol,
    identity: owner.identity,
    profile: owner.profile,
    id: a.id,
    kind: a.kind,
    name: a.name,
    addr: a.addr,
    port: a.port,
    rule: a.rule,
    bytes_up: a.up,
    bytes_down: a.down,
    ms: Math.round(performance.now() - a.started),
    reason: a.reason,
  });
}
