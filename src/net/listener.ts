// An inbound TCP listener opened by a client (`bind`). Accepted connections become ordinary
// TcpStreams owned by the same session, under server-assigned ids.
import type { Socket, TCPSocketListener } from "bun";
import { tcpHandlers, TcpStream, type StreamOwner } from "./tcp-stream.ts";

export interface ListenerOwner extends StreamOwner {
  /** Returns the stream for an accepted socket, or null to refuse it (limit reached). */
  accept(listener: TcpListener, remoteAddr: string, remotePort: number): TcpStream | null;
}

export class TcpListener {
  readonly kind = "listener" as const;
  private listener: TCPSocketListener<TcpStream | null> | null = null;
  backlog = 128;
  closed = false;

  constructor(
    readonly owner: ListenerOwner,
    readonly id: number,
    readonly addr: string,
  ) {}

  /** Throws Bun's error (code EADDRINUSE, EACCES, …) when the port cannot be bound. */
  listen(port: number, allowHalfOpen: boolean): number {
    const self = this;
    this.listener = Bun.listen<TcpStream | null>({
      hostname: this.addr,
      port,
      allowHalfOpen,
      data: null,
      socket: {
        ...guarded,
        open(socket: Socket<TcpStream | null>) {
          const stream = self.closed ? null : self.owner.accept(self, socket.remoteAddress, remotePort(socket));
          if (!stream) return void socket.terminate();
          socket.data = stream;
          stream.attach(socket as Socket<TcpStream>, false);
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
    if (this.closed) return;
    this.closed = true;
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
