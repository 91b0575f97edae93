import { expect, test } from "bun:test";
import { parseEntry } from "../src/policy/entry.ts";
import { clientIp } from "../src/server/client-ip.ts";

const trusted = ["127.0.0.1", "10.0.0.0/8"].map(parseEntry);

test.each([
  ["no trusted proxies: the peer", "127.0.0.1", "203.0.113.9", [], "127.0.0.1"],
  ["untrusted peer: header ignored", "198.51.100.1", "203.0.113.9", trusted, "198.51.100.1"],
  ["trusted peer, one hop", "127.0.0.1", "203.0.113.9", trusted, "203.0.113.9"],
  ["trusted chain: first untrusted from the right", "127.0.0.1", "203.0.113.9, 198.51.100.7, 10.1.1.1", trusted, "198.51.100.7"],
  ["spoofed leftmost entries are not believed", "127.0.0.1", "1.1.1.1, 203.0.113.9", trusted, "203.0.113.9"],
  ["garbage hop stops the walk", "127.0.0.1", "203.0.113.9, junk", trusted, "127.0.0.1"],
  ["mapped IPv6 peer is canonical", "::ffff:127.0.0.1", "203.0.113.9", trusted, "203.0.113.9"],
  ["no header: the peer", "127.0.0.1", null, trusted, "127.0.0.1"],
] as const)("%s", (_name, peer, xff, t, want) => {
  expect(clientIp(peer, xff, t as never)).toBe(want);
});
