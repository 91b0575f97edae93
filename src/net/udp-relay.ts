// One client UDP socket: aimed at a default peer (connect_udp), able to send elsewhere
// (send_to, every datagram checked by the session), and delivering only datagrams from
// peers it has sent to — so a client cannot use it to listen for arbitrary senders.
import type { udp } from "bun";
import { canonicalIp, formatHostPort } from "../policy/address.ts";
import { MAX_DATAGRAM_BYTES } from "../protocol/constants.ts";

/** Peers remembered per socket; the oldest is forgotten past this, bounding memory. */
const MAX_PEERS = 1024;

export interface UdpOwner {
  datagram(relay: UdpRelay, data: Uint8Array, addr: string, port: number): void;
  udpClosed(relay: UdpRelay, reason: string): void;
  debug(msg: string, fields: Record<string, unknown>): void;
}

export class UdpRelay {
  readonly kind = "udp" as const;
  private socket: udp.Socket<"uint8array"> | null = null;
  private readonly peers = new Map<string, true>();
  closed = false;
  up = 0;
  down = 0;
  readonly started = performance.now();

  private constructor(
    readonly owner: UdpOwner,
    readonly id: number,
    readonly peer: { addr: string; port: number; name: string | null; rule: string },
  ) {}

  /** Binds a dual-stack socket (falls back to IPv4 where IPv6 is off) on an ephemeral port. */
  static async open(owner: UdpOwner, id: number, peer: UdpRelay["peer"]): Promise<UdpRelay> {
    const relay = new UdpRelay(owner, id, peer);
    const socket = {
      data: (_s: unknown, data: Uint8Array, port: number, addr: string) => relay.received(data, addr, port),
      // Bun calls error(err) with `this` = socket (BUN-NOTES §3); ICMP errors leave it usable.
      error: (err: Error) => owner.debug("udp socket error", { id, error: String(err) }),
    } as unknown as udp.SocketHandler<"uint8array">;
    const v6 = peer.addr.includes(":");
    try {
      relay.socket = await Bun.udpSocket({ hostname: "::", port: 0, binaryType: "uint8array", socket });
    } catch (e) {
      if (v6) throw e;
      relay.socket = await Bun.udpSocket({ hostname: "0.0.0.0", port: 0, binaryType: "uint8array", socket });
    }
    return relay;
  }

  get localPort(): number {
    return this.socket?.port ?? 0;
  }

  /** Send one datagram to a canonical address the policy already allowed. Returns a problem or null. */
  send(data: Uint8Array, addr: string, port: number): string | null {
    if (this.closed || !this.socket) return "socket is closed";
    if (data.length > MAX_DATAGRAM_BYTES) return `datagram of ${data.length} bytes exceeds ${MAX_DATAGRAM_BYTES}`;
    const key = `${addr}|${port}`;
    if (!this.peers.has(key)) {
      if (this.peers.size >= MAX_PEERS) this.peers.delete(this.peers.keys().next().value!);
      this.peers.set(key, true);
    }
    try {
      this.socket.send(data, port, addr);
    } catch (e) {
      // A stale ICMP refusal from another peer poisons the next send once (BUN-NOTES §3).
      if ((e as { code?: string }).code !== "ECONNREFUSED") return `send to ${formatHostPort(addr, port)} failed: ${(e as Error).message}`;
      try {
        this.socket.send(data, port, addr);
      } catch (e2) {
        return `send to ${formatHostPort(addr, port)} failed: ${(e2 as Error).message}`;
      }
    }
    this.up += data.length;
    return null;
  }

  private received(data: Uint8Array, rawAddr: string, port: number): void {
    if (this.closed) return;
    const addr = canonicalIp(rawAddr) ?? rawAddr; // ::ffff:127.0.0.1 → 127.0.0.1
    if (!this.peers.has(`${addr}|${port}`)) return; // never sent to: not ours to hear
    this.down += data.length;
    this.owner.datagram(this, data, addr, port);
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.socket?.close();
    this.owner.udpClosed(this, reason);
  }
}
