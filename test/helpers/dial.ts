// A plain TCP client of the test's own, for dialling the relay's listeners (bind/accepted).
import type { Socket } from "bun";
import type { TestClient } from "./client.ts";
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


/**
 * Dials listener `listenerId` of client `c` on `port` and writes `early` at once. Resolves, once
 * `c` holds those bytes, with the peer and the accepted connection's id; throws if `c` heard any
 * data before `accepted`.
 */
export async function dialAccepted(c: TestClient, listenerId: number, port: number, early: string): Promise<{ peer: Dialer; connId: number }> {
  const order: string[] = [];
  const before = c.onEvent;
  c.onEvent = (e) => {
    if (e.ev === "accepted" || e.ev === "data") order.push(e.ev);
    before?.(e);
  };
  try {
    const peer = await dial(port);
    peer.socket.write(early);
    const acc = await c.next(listenerId);
    if (acc.ev !== "accepted") throw new Error(`expected accepted on ${listenerId}, got ${JSON.stringify(acc)}`);
    await c.waitBytes(acc.connId, early.length);
    if (order[0] !== "accepted") throw new Error(`data arrived before accepted: ${order.join(", ")}`);
    const got = new TextDecoder().decode(c.received(acc.connId));
    if (got !== early) throw new Error(`the accepted connection carried ${JSON.stringify(got)}, not ${JSON.stringify(early)}`);
    return { peer, connId: acc.connId };
  } finally {
    c.onEvent = before;
  }
}
