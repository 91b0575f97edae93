// Process-wide counters, rendered in the Prometheus text format for GET /metrics.

export type SocketKind = "tcp" | "tls" | "udp" | "listener" | "inbound";

export class Metrics {
  sessions = 0;
  sessionsTotal = 0;
  sockets: Record<SocketKind, number> = { tcp: 0, tls: 0, udp: 0, listener: 0, inbound: 0 };
  bytesUp = 0; // browser → targets
  bytesDown = 0; // targets → browser
  denials = new Map<string, number>();
  errors = new Map<string, number>();
  poolHits = 0;
  poolMisses = 0;
  udpDropped = 0;

  denied(rule: string): void {
    this.denials.set(rule, (this.denials.get(rule) ?? 0) + 1);
  }
  error(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  render(): string {
    const out: string[] = [];
    const metric = (name: string, type: "gauge" | "counter", help: string, rows: [string, number][]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of rows) out.push(`${name}${labels} ${v}`);
    };
    const label = (k: string, v: string) => `{${k}="${v.replace(/["\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\" + c))}"}`;
    metric("wasmnet_sessions", "gauge", "Open WebSocket sessions.", [["", this.sessions]]);
    metric("wasmnet_sessions_total", "counter", "Sessions accepted since start.", [["", this.sessionsTotal]]);
    metric("wasmnet_sockets", "gauge", "Open sockets by kind.", Object.entries(this.sockets).map(([k, v]) => [label("kind", k), v]));
    metric("wasmnet_bytes_total", "counter", "Payload bytes relayed.", [
      [label("direction", "up"), this.bytesUp],
      [label("direction", "down"), this.bytesDown],
    ]);
    metric("wasmnet_denials_total", "counter", "Requests refused by the policy, by deciding rule.", [...this.denials].map(([k, v]) => [label("rule", k), v]));
    metric("wasmnet_errors_total", "counter", "Error events sent, by code.", [...this.errors].map(([k, v]) => [label("code", k), v]));
    metric("wasmnet_pool_total", "counter", "Connection pool look-ups.", [
      [label("result", "hit"), this.poolHits],
      [label("result", "miss"), this.poolMisses],
    ]);
    metric("wasmnet_udp_dropped_total", "counter", "UDP datagrams dropped by the bandwidth limit.", [["", this.udpDropped]]);
    return out.join("\n") + "\n";
  }
}
