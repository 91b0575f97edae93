// One client UDP socket: aimed at a default peer (connect_udp), able to send elsewhere
// (send_to, every datagram cleared by the gate), and delivering only datagrams from peers it
// has sent to — so a client cannot use it to listen for arbitrary senders.
import type { udp } from "bun";
import { canonicalIp, formatHostPort } from "../policy/address.ts";
import type { ErrorCode } from "../protocol/constants.ts";
import { MAX_DATAGRAM_BYTES } from "../protocol/constants.ts";
import type { Cleared } from "./gate.ts";
import { IdleMark } from "./idle-mark.ts";

/** Peers remembered per socket; the oldest is forgotten past this, bounding memory. */
const MAX_PEERS = 1024;

export interface UdpOwner {
  datagram(relay: UdpRelay, data: Uint8Array, addr: string, port: number): void;
  udpClosed(relay: UdpRelay, reason: string): void;
  debug(msg: string, fields: Record<string, unknown>): void;
}

/** Why a datagram could not be sent. */
export interface UdpSendProblem {
  code: Extract<ErrorCode, "EBADREQ" | "EHOSTUNREACH">;
  msg: string;
}

export class UdpRelay {
  readonly kind = "udp" as const;
  private socket: udp.Socket<"uint8array"> | null = null;
  private readonly peers = new Map<string, true>();
  private _closed = false;
  private readonly idle = new IdleMark();
  up = 0;
  down = 0;
  readonly started = performance.now();

  private constructor(
    private readonly owner: UdpOwner,
    readonly id: number,
    /** The default peer (connect_udp), where `send` goes. */
    readonly peer: Cleared,
  ) {}

  /** Binds a dual-stack socket (falls back to IPv4 where IPv6 is off) on an ephemeral port. */
  static async open(owner: UdpOwner, id: number, peer: Cleared): Promise<UdpRelay> {
    const relay = new UdpRelay(owner, id, peer);
    const socket = {
      data: (_s: unknown, data: Uint8Array, port: number, addr: string) => relay.received(data, addr, port),
      // Bun calls error(err) with `this` = socket (docs/bun.md#udp-error-handler-signature); ICMP errors leave it usable.
      error: (err: Error) => owner.debug("udp socket error", { id, error: String(err) }),
    } as unknown as udp.SocketHandler<"uint8array">;
    try {
      relay.socket = await Bun.udpSocket({ hostname: "::", port: 0, binaryType: "uint8array", socket });
    } catch (e) {
      if (peer.addr.includes(":")) throw e;
      relay.socket = await Bun.udpSocket({ hostname: "0.0.0.0", port: 0, binaryType: "uint8array", socket });
    }
    return relay;
  }

  get closed(): boolean {
    return this._closed;
  }

  get localPort(): number {
    return this.socket?.port ?? 0;
  }

  /** Send one datagram to what the gate cleared. */
  send(data: Uint8Array, to: Cleared): UdpSendProblem | null {
    if (this._closed || !this.socket) return { code: "EHOSTUNREACH", msg: "socket is closed" };
    if (data.length > MAX_DATAGRAM_BYTES) return { code: "EBADREQ", msg: `datagram of ${data.length} bytes exceeds ${MAX_DATAGRAM_BYTES}` };
    const { addr, port } = to;
    const key = `${addr}|${port}`;
    if (!this.peers.has(key)) {
      if (this.peers.size >= MAX_PEERS) this.peers.delete(this.peers.keys().next().value!);
      this.peers.set(key, true);
    }
    try {
      this.socket.send(data, port, addr);
    } catch (e) {
      // A stale ICMP refusal from another peer poisons the next send once (docs/bun.md#stale-icmp-errors-on-udp).
      if ((e as { code?: string }).code !== "ECONNREFUSED") return { code: "EHOSTUNREACH", msg: `send to ${formatHostPort(addr, port)} failed: ${(e as Error).message}` };
      try {
        this.socket.send(data, port, addr);
      } catch (e2) {
        return { code: "EHOSTUNREACH", msg: `send to ${formatHostPort(addr, port)} failed: ${(e2 as Error).message}` };
      }
    }
    this.up += data.length;
    return null;
  }

  private received(data: Uint8Array, rawAddr: string, port: number): void {
    if (this._closed) return;
    // Peers are stored canonical. Bun gives an IPv4 sender as canonical dotted text, with the
    // IPv4-mapped prefix on the dual-stack socket (::ffff:127.0.0.1): stripped here without a
    // parse, so a flood from strangers costs a string check. Only IPv6 text is canonicalised.
    const v4 = rawAddr.startsWith("::ffff:") && rawAddr.includes(".") ? rawAddr.slice(7) : rawAddr;
    const addr = v4.includes(":") ? (canonicalIp(v4) ?? v4) : v4;
    if (!this.peers.has(`${addr}|${port}`)) return; // never sent to: not ours to hear
    this.down += data.length;
    this.owner.datagram(this, data, addr, port);
  }

  /** How long no byte moved either way, as of `now`. */
  idleMs(now: number): number {
    return this.idle.idleMs(this.up + this.down, now);
  }

  close(reason: string): void {
    if (this._closed) return;
    this._closed = true;
    this.socket?.close();
    this.owner.udpClosed(this, reason);
  }
}
