// A plain TCP client of the test's own, for dialling the relay's listeners (bind/accepted).
import type { Socket } from "bun";
import { waitFor, WaitTimeout } from "./wait.ts";

/** A plain TCP client socket of the test, recording what it receives. */
export interface Dialer {
  socket: Socket<undefined>;
  localPort: number;
  got: Uint8Array[];
  ended: boolean;
  closed: boolean;
  text(): string;
}

export async function dial(port: number, hostname = "127.0.0.1"): Promise<Dialer> {
  const d: Dialer = {
    socket: null as never,
    localPort: 0,
    got: [],
    ended: false,
    closed: false,
    text: () => new TextDecoder().decode(Buffer.concat(d.got)),
  };
  d.socket = await Bun.connect({
    hostname,
    port,
    socket: {
      data(_s, b) {
        d.got.push(new Uint8Array(b));
      },
      end() {
        d.ended = true;
      },
      close() {
        d.closed = true;
      },
      error() {},
    },
  });
  d.localPort = d.socket.localPort;
  return d;
}

/** Resolves true if a connection to port is refused (or closed by the peer within 3 s). */
export async function refused(port: number): Promise<boolean> {
  let d: Dialer;
  try {
    d = await dial(port);
  } catch {
    return true;
  }
  try {
    await waitFor(() => d.closed, { what: `the peer on ${port} to close`, timeoutMs: 3000 });
    return true;
  } catch (e) {
    if (e instanceof WaitTimeout) return false;
    throw e;
  } finally {
    d.socket.end();
  }
}

