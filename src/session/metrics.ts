// Process-wide counters that sessions move, rendered in the Prometheus text format for
// GET /metrics. Sessions are the only writers; the pool keeps its own hit/miss counts and is
// asked at render time.
import { SOCKET_KINDS, type SocketKind } from "../net/socket-kind.ts";

export class Metrics {
  sessions = 0;
  sessionsTotal = 0;
  sockets: Record<SocketKind, number> = { tcp: 0, tls: 0, udp: 0, listener: 0, inbound: 0 };
  bytesUp = 0; // browser → targets
  bytesDown = 0; // targets → browser
  readonly denials = new Map<string, number>();
  readonly errors = new Map<string, number>();
  udpDropped = 0;

  denied(rule: string): void {
    this.denials.set(rule, (this.denials.get(rule) ?? 0) + 1);
  }
  error(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  render(pool: { hits: number; misses: number } | null = null): string {
    const out: string[] = [];
    const metric = (name: string, type: "gauge" | "counter", help: string, rows: [string, number][]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of rows) out.push(`${name}${labels} ${v}`);
    };
    const label = (k: string, v: string) => `{${k}="${v.replace(/["\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\" + c))}"}`;
    metric("wasmnet_sessions", "gauge", "Open WebSocket sessions.", [["", this.sessions]]);
    metric("wasmnet_sessions_total", "counter", "Sessions accepted since start.", [["", this.sessionsTotal]]);
    metric("wasmnet_sockets", "gauge", "Open sockets by kind.", SOCKET_KINDS.map((k) => [label("kind", k), this.sockets[k]]));
    metric("wasmnet_bytes_total", "counter", "Payload bytes relayed.", [
      [label("direction", "up"), this.bytesUp],
      [label("direction", "down"), this.bytesDown],
    ]);
    metric("wasmnet_denials_total", "counter", "Requests refused by the policy, by deciding rule.", [...this.denials].map(([k, v]) => [label("rule", k), v]));
    metric("wasmnet_errors_total", "counter", "Error events sent, by code.", [...this.errors].map(([k, v]) => [label("code", k), v]));
    metric("wasmnet_pool_total", "counter", "Connection pool look-ups.", [
      [label("result", "hit"), pool?.hits ?? 0],
      [label("result", "miss"), pool?.misses ?? 0],
    ]);
    metric("wasmnet_udp_dropped_total", "counter", "UDP datagrams dropped by the bandwidth limit.", [["", this.udpDropped]]);
    return out.join("\n") + "\n";
  }
}
