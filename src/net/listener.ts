// An inbound TCP listener opened by a client (`bind`). Accepted connections become ordinary
// TcpStreams owned by the same session, under server-assigned ids.
import type { Socket, TCPSocketListener } from "bun";
import type { Cleared } from "./gate.ts";
import { tcpHandlers, TcpStream } from "./tcp-stream.ts";

export interface ListenerOwner {
  /** Returns the stream for an accepted socket, or null to refuse it (limit reached). */
  accept(listener: TcpListener, remoteAddr: string, remotePort: number): TcpStream | null;
}

export class TcpListener {
  readonly kind = "listener" as const;
  private listener: TCPSocketListener<TcpStream | null> | null = null;
  private _closed = false;

  constructor(
    private readonly owner: ListenerOwner,
    readonly id: number,
    /** The local address the gate cleared for bind (its port may be 0: any). */
    readonly local: Cleared,
  ) {}

  get closed(): boolean {
    return this._closed;
  }

  /** Listens on `port` (the cleared address). Throws Bun's error (code EADDRINUSE, EACCES, …). */
  listen(port: number, allowHalfOpen: boolean): number {
    const self = this;
    this.listener = Bun.listen<TcpStream | null>({
      hostname: this.local.addr,
      port,
      allowHalfOpen,
      data: null,
      socket: {
        ...guarded,
        open(socket: Socket<TcpStream | null>) {
          const stream = self._closed ? null : self.owner.accept(self, socket.remoteAddress, remotePort(socket));
          if (!stream) return void socket.terminate();
          socket.data = stream;
          stream.adopt(socket as Socket<TcpStream>, false);
        },
      } as never,
    });
    return this.listener.port;
  }

  get port(): number {
    return this.listener?.port ?? 0;
  }

  /** Stops accepting; connections already accepted stay open until closed. */
  close(): void {
    if (this._closed) return;
    this._closed = true;
    this.listener?.stop(false);
  }
}

/**
 * The shared stream handlers, skipping sockets that never got a stream: a refused connection
 * (limit reached, listener closed) is terminated inside `open` with data still null, and Bun
 * then runs `error`/`close` on it.
 */
const guarded = Object.fromEntries(
  Object.entries(tcpHandlers).map(([name, fn]) => [
    name,
    typeof fn === "function"
      ? function (this: unknown, socket: Socket<TcpStream | null>, ...rest: unknown[]) {
          if (socket.data !== null) return (fn as (...a: unknown[]) => unknown).call(this, socket, ...rest);
        }
      : fn,
  ]),
);

function remotePort(socket: Socket<unknown>): number {
  // Bun exposes the peer port as remotePort on 1.4; fall back to 0 if absent.
  return (socket as unknown as { remotePort?: number }).remotePort ?? 0;
}
