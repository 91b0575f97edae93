// A tiny real DNS server on loopback UDP (127.0.0.1, port 0) for the tests: answers A and AAAA
// from a table, NXDOMAIN for names not in it, and NOERROR with no answers for a type the name
// lacks. Used with dnsServerResolver(["127.0.0.1:PORT"]) so no test asks the system resolver
// about anything but `localhost`.
import type { udp } from "bun";
import { isIPv4, isIPv6 } from "node:net";

export interface DnsServer {
  port: number;
  /** "127.0.0.1:PORT", ready for dnsServerResolver. */
  address: string;
  /** Every question received, as "name TYPE". */
  queries: string[];
  /** name (lower case, no trailing dot) → addresses (v4 and v6 mixed). Editable while running. */
  table: Map<string, string[]>;
  stop(): void;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;

function readName(msg: Uint8Array, off: number): { name: string; end: number } | null {
  const labels: string[] = [];
  while (off < msg.length) {
    const len = msg[off]!;
    if (len === 0) return { name: labels.join(".").toLowerCase(), end: off + 1 };
    if (len >= 0xc0) return null; // no compression in questions from our resolvers
    labels.push(new TextDecoder().decode(msg.subarray(off + 1, off + 1 + len)));
    off += 1 + len;
  }
  return null;
}

function ipv4Bytes(a: string): number[] {
  return a.split(".").map(Number);
}

function ipv6Bytes(a: string): number[] {
  const [head, tail] = a.includes("::") ? a.split("::") : [a, null];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === null ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return groups.flatMap((g) => {
    const v = parseInt(g || "0", 16);
    return [v >> 8, v & 0xff];
  });
}

function answer(query: Uint8Array, table: Map<string, string[]>, queries: string[]): Uint8Array | null {
  if (query.length < 12) return null;
  const dv = new DataView(query.buffer, query.byteOffset, query.byteLength);
  const qd = dv.getUint16(4);
  if (qd !== 1) return null;
  const q = readName(query, 12);
  if (!q || q.end + 4 > query.length) return null;
  const qtype = dv.getUint16(q.end);
  const question = query.subarray(12, q.end + 4);
  queries.push(`${q.name} ${qtype === TYPE_A ? "A" : qtype === TYPE_AAAA ? "AAAA" : qtype}`);
  const known = table.get(q.name);
  const addrs = (known ?? []).filter((a) => (qtype === TYPE_A ? isIPv4(a) : qtype === TYPE_AAAA ? isIPv6(a) : false));
  const rcode = known === undefined ? 3 : 0; // NXDOMAIN / NOERROR
  const out: number[] = [];
  const u16 = (v: number) => out.push(v >> 8, v & 0xff);
  u16(dv.getUint16(0)); // id
  out.push(0x84 | (query[2]! & 0x01), 0x80 | rcode); // QR, AA, RD copied; RA, rcode
  u16(1);
  u16(addrs.length);
  u16(0);
  u16(0);
  out.push(...question);
  for (const a of addrs) {
    u16(0xc00c); // pointer to the question's name
    u16(qtype);
    u16(1); // IN
    out.push(0, 0, 0, 0); // TTL 0: no caching between tests
    const rdata = qtype === TYPE_A ? ipv4Bytes(a) : ipv6Bytes(a);
    u16(rdata.length);
    out.push(...rdata);
  }
  return new Uint8Array(out);
}

export async function dnsServer(records: Record<string, string[]> = {}): Promise<DnsServer> {
  const table = new Map(Object.entries(records).map(([k, v]) => [k.toLowerCase(), v]));
  const queries: string[] = [];
  const socket: udp.Socket<"uint8array"> = await Bun.udpSocket({
    hostname: "127.0.0.1",
    port: 0,
    binaryType: "uint8array",
    socket: {
      data(s, data, port, address) {
        const reply = answer(data, table, queries);
        if (reply) {
          try {
            s.send(reply, port, address);
          } catch {}
        }
      },
    },
  });
  return {
    port: socket.port,
    address: `127.0.0.1:${socket.port}`,
    queries,
    table,
    stop: () => socket.close(),
  };
}
