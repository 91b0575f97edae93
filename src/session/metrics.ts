// The server's counters, rendered in the Prometheus text format for GET /metrics.
//
// Sessions move most of them; the pool, the counters backend and the memory budget keep their
// own state and are asked at render time (`extra`). A process's numbers become a list of
// series (`series()`), and lists from several worker processes merge into one (`mergeSeries`),
// so /metrics describes the whole server whichever worker answers (docs/architecture.md#metrics).
import { SOCKET_KINDS, type SocketKind } from "../net/socket-kind.ts";

/** How a family's series from several processes combine. */
type Merge = "sum" | "max" | "min";

interface Family {
  type: "gauge" | "counter";
  help: string;
  merge: Merge;
}

/** Every metric family wasmnet exports: the contract dashboards and alerts are written against. */
export const FAMILIES = {
  wasmnet_sessions: { type: "gauge", help: "Open sessions.", merge: "sum" },
  wasmnet_sessions_total: { type: "counter", help: "Sessions accepted since start.", merge: "sum" },
  wasmnet_profile_sessions: { type: "gauge", help: "Open sessions by profile (\"\" = the top-level policy).", merge: "sum" },
  wasmnet_protocol_sessions: { type: "gauge", help: "Open sessions by the protocol they speak (kind: wasmnet, wisp, wsproxy, posix).", merge: "sum" },
  wasmnet_sockets: { type: "gauge", help: "Open sockets by kind.", merge: "sum" },
  wasmnet_bytes_total: { type: "counter", help: "Payload bytes relayed, by direction (up = client to targets).", merge: "sum" },
  wasmnet_denials_total: { type: "counter", help: "Requests refused by the policy, by deciding rule.", merge: "sum" },
  wasmnet_profile_denials_total: { type: "counter", help: "Requests refused by the policy, by profile.", merge: "sum" },
  wasmnet_errors_total: { type: "counter", help: "Error events sent, by code.", merge: "sum" },
  wasmnet_refused_total: { type: "counter", help: "Sessions refused before the upgrade, by HTTP status.", merge: "sum" },
  wasmnet_pool_total: { type: "counter", help: "Connection pool look-ups.", merge: "sum" },
  wasmnet_udp_dropped_total: { type: "counter", help: "UDP datagrams dropped, by reason.", merge: "sum" },
  wasmnet_reloads_total: { type: "counter", help: "Policy and key reloads, by result.", merge: "sum" },
  wasmnet_memory_bytes: { type: "gauge", help: "Memory accounted against the budget.", merge: "sum" },
  // Each worker holds its share of max_memory_mb (1/N): the shares add up to the budget.
  wasmnet_memory_budget_bytes: { type: "gauge", help: "The memory budget (max_memory_mb).", merge: "sum" },
  wasmnet_overloaded: { type: "gauge", help: "1 while above the memory budget: new sessions and streams are refused.", merge: "max" },
  wasmnet_draining: { type: "gauge", help: "1 while draining: new sessions are refused, /healthz answers 503.", merge: "max" },
  wasmnet_redis_up: { type: "gauge", help: "1 while Redis answers (cluster-wide limits); 0 when it does not or is not configured.", merge: "min" },
  wasmnet_redis_errors_total: { type: "counter", help: "Redis calls that failed or timed out.", merge: "sum" },
  wasmnet_redis_fallbacks_total: { type: "counter", help: "Limit checks Redis did not decide (answered locally, or refused).", merge: "sum" },
  wasmnet_workers: { type: "gauge", help: "Worker processes running.", merge: "max" },
  wasmnet_worker_restarts_total: { type: "counter", help: "Worker processes restarted after they died.", merge: "max" },
} as const satisfies Record<string, Family>;

export type FamilyName = keyof typeof FAMILIES;

/** One series: a family, its labels, its value. Plain data, so it crosses process boundaries. */
export interface Series {
  name: FamilyName;
  labels?: Record<string, string>;
  value: number;
}

export type UdpDropReason = "bandwidth" | "backpressure" | "lookups" | "unbound";

export class Metrics {
  sessions = 0;
  sessionsTotal = 0;
  sockets: Record<SocketKind, number> = { tcp: 0, tls: 0, udp: 0, listener: 0, inbound: 0 };
  bytesUp = 0;
  bytesDown = 0;
  readonly profileSessions = new Map<string, number>();
  readonly protocolSessions = new Map<string, number>();
  readonly denials = new Map<string, number>();
  readonly profileDenials = new Map<string, number>();
  readonly errors = new Map<string, number>();
  readonly refused = new Map<number, number>();
  readonly udpDrops = new Map<UdpDropReason, number>();
  readonly reloads = { ok: 0, error: 0 };

  denied(rule: string, profile: string | null = null): void {
    bump(this.denials, rule);
    bump(this.profileDenials, profile ?? "");
  }
  error(code: string): void {
    bump(this.errors, code);
  }
  refusedSession(status: number): void {
    bump(this.refused, status);
  }
  udpDropped(reason: UdpDropReason): void {
    bump(this.udpDrops, reason);
  }
  /** Every UDP datagram dropped, whatever the reason. */
  get udpDroppedTotal(): number {
    let n = 0;
    for (const v of this.udpDrops.values()) n += v;
    return n;
  }
  sessionOpened(profile: string | null, protocol = "wasmnet"): void {
    this.sessions++;
    this.sessionsTotal++;
    bump(this.profileSessions, profile ?? "");
    bump(this.protocolSessions, protocol);
  }
  sessionClosed(profile: string | null, protocol = "wasmnet"): void {
    this.sessions--;
    bump(this.profileSessions, profile ?? "", -1);
    bump(this.protocolSessions, protocol, -1);
  }
  /** An open session moved to another profile (a login after the upgrade). */
  sessionProfileChanged(from: string | null, to: string | null): void {
    bump(this.profileSessions, from ?? "", -1);
    bump(this.profileSessions, to ?? "");
  }

  /** This process's series, plus those of the parts that keep their own state. */
  series(extra: Series[] = []): Series[] {
    const out: Series[] = [
      { name: "wasmnet_sessions", value: this.sessions },
      { name: "wasmnet_sessions_total", value: this.sessionsTotal },
      ...SOCKET_KINDS.map((kind): Series => ({ name: "wasmnet_sockets", labels: { kind }, value: this.sockets[kind] })),
      { name: "wasmnet_bytes_total", labels: { direction: "up" }, value: this.bytesUp },
      { name: "wasmnet_bytes_total", labels: { direction: "down" }, value: this.bytesDown },
      ...labelled("wasmnet_profile_sessions", "profile", this.profileSessions),
      ...labelled("wasmnet_protocol_sessions", "kind", this.protocolSessions),
      ...labelled("wasmnet_denials_total", "rule", this.denials),
      ...labelled("wasmnet_profile_denials_total", "profile", this.profileDenials),
      ...labelled("wasmnet_errors_total", "code", this.errors),
      ...labelled("wasmnet_refused_total", "status", this.refused),
      ...labelled("wasmnet_udp_dropped_total", "reason", this.udpDrops),
      { name: "wasmnet_reloads_total", labels: { result: "ok" }, value: this.reloads.ok },
      { name: "wasmnet_reloads_total", labels: { result: "error" }, value: this.reloads.error },
    ];
    return [...out, ...extra];
  }
}

function bump<K>(m: Map<K, number>, k: K, by = 1): void {
  m.set(k, (m.get(k) ?? 0) + by);
}

function labelled(name: FamilyName, label: string, m: ReadonlyMap<string | number, number>): Series[] {
  return [...m].map(([k, value]) => ({ name, labels: { [label]: String(k) }, value }));
}

const seriesKey = (s: Series) => s.name + JSON.stringify(s.labels ?? {});

/** Several processes' series as one: each family combined its own way (sum, or max/min for states). */
export function mergeSeries(lists: readonly Series[][]): Series[] {
  const merged = new Map<string, Series>();
  for (const list of lists)
    for (const s of list) {
      const k = seriesKey(s);
      const have = merged.get(k);
      if (!have) merged.set(k, { ...s });
      else {
        const how = FAMILIES[s.name].merge;
        have.value = how === "sum" ? have.value + s.value : how === "max" ? Math.max(have.value, s.value) : Math.min(have.value, s.value);
      }
    }
  return [...merged.values()];
}

const escapeLabel = (v: string) => v.replace(/["\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\" + c));

/**
 * The Prometheus text format: each family's HELP and TYPE once, then its series. Every family is
 * listed, with no sample until it has one, so a scraper sees the whole contract from the start.
 */
export function renderSeries(series: readonly Series[]): string {
  const byFamily = new Map<FamilyName, Series[]>();
  for (const s of series) {
    let l = byFamily.get(s.name);
    if (!l) byFamily.set(s.name, (l = []));
    l.push(s);
  }
  const out: string[] = [];
  for (const [name, family] of Object.entries(FAMILIES) as [FamilyName, Family][]) {
    out.push(`# HELP ${name} ${family.help}`, `# TYPE ${name} ${family.type}`);
    for (const s of byFamily.get(name) ?? []) {
      const labels = s.labels ? Object.entries(s.labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`) : [];
      out.push(`${name}${labels.length ? `{${labels.join(",")}}` : ""} ${s.value}`);
    }
  }
  return out.join("\n") + "\n";
}
