// resolve end to end. Only `localhost` goes through the system resolver (/etc/hosts); every
// other name is answered by a real DNS server on loopback (dnsServerResolver).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { udp } from "bun";
import { pass, type GatePolicy, type LookupBudget } from "../src/net/gate.ts";
import { dnsServerResolver } from "../src/net/resolve.ts";
import { defaultPolicy, unrestrictedPolicy } from "../src/policy/load.ts";
import { TestClient } from "./helpers/client.ts";
import { dnsServer, type DnsServer } from "./helpers/dns-server.ts";
import { startServer } from "./helpers/server.ts";
import { waitFor } from "./helpers/wait.ts";

let dns: DnsServer;
let system: Awaited<ReturnType<typeof startServer>>;
let open: Awaited<ReturnType<typeof startServer>>;
let guarded: Awaited<ReturnType<typeof startServer>>;

beforeAll(async () => {
  dns = await dnsServer({
    "both.test": ["127.0.0.7", "::7"],
    "v6only.test": ["2001:db8::1"],
    "mixed.test": ["10.1.2.3", "93.184.216.34", "2001:4860::8888"],
    "private.test": ["127.0.0.1", "192.168.1.1"],
    "localhost": ["127.0.0.1"],
  });
  system = await startServer({ noPolicy: true }); // system resolver: used only for `localhost`
  open = await startServer({ noPolicy: true, resolver: dnsServerResolver([dns.address]) });
  guarded = await startServer({ policy: defaultPolicy(), resolver: dnsServerResolver([dns.address]) });
});
afterAll(async () => {
  await Promise.all([system.stop(), open.stop(), guarded.stop()]);
  dns.stop();
});

describe.each(["json", "binary"] as const)("%s framing", (framing) => {
  test('resolve("localhost") answers 127.0.0.1 with no policy (system resolver, /etc/hosts)', async () => {
    const c = await TestClient.open(system.wsUrl, framing);
    c.send({ op: "resolve", id: 1, name: "localhost" });
    const e = await c.next(1);
    expect(e.ev).toBe("resolved");
    expect((e as { addrs: string[] }).addrs).toContain("127.0.0.1");
    c.close();
  });

  test("A and AAAA answers are both returned", async () => {
    const c = await TestClient.open(open.wsUrl, framing);
    c.send({ op: "resolve", id: 2, name: "both.test" });
    const e = await c.next(2);
    expect(e.ev).toBe("resolved");
    expect([...(e as { addrs: string[] }).addrs].sort()).toEqual(["127.0.0.7", "::7"]);
    c.send({ op: "resolve", id: 3, name: "V6ONLY.test." }); // case and a trailing dot are normalised
    expect(await c.next(3)).toEqual({ ev: "resolved", id: 3, addrs: ["2001:db8::1"] });
    c.close();
  });
});

test("a name that does not exist is ENOTFOUND", async () => {
  const c = await TestClient.open(open.wsUrl);
  const before = dns.queries.length;
  c.send({ op: "resolve", id: 1, name: "does-not-exist.test" });
  const e = await c.next(1);
  expect(e).toMatchObject({ ev: "error", id: 1, code: "ENOTFOUND" });
  expect((e as { msg: string }).msg).toContain("does-not-exist.test");
  expect(dns.queries.slice(before)).toContain("does-not-exist.test A");
  // The id is free again afterwards.
  c.send({ op: "resolve", id: 1, name: "both.test" });
  expect((await c.next(1)).ev).toBe("resolved");
  c.close();
});

test("a DNS server that never answers gives ETIMEDOUT", async () => {
  const silent: udp.Socket<"uint8array"> = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, binaryType: "uint8array", socket: { data() {} } });
  const s = await startServer({ noPolicy: true, resolver: dnsServerResolver([`127.0.0.1:${silent.port}`], 300) });
  try {
    const c = await TestClient.open(s.wsUrl);
    c.send({ op: "resolve", id: 1, name: "slow.test" });
    expect(await c.next(1, 10_000)).toMatchObject({ ev: "error", id: 1, code: "ETIMEDOUT" });
    c.close();
  } finally {
    await s.stop();
    silent.close();
  }
});

test("an IP literal resolves to itself, canonicalised, without a look-up", async () => {
  const c = await TestClient.open(open.wsUrl);
  const before = dns.queries.length;
  c.send({ op: "resolve", id: 1, name: "::ffff:127.0.0.1" });
  expect(await c.next(1)).toEqual({ ev: "resolved", id: 1, addrs: ["127.0.0.1"] });
  expect(dns.queries.length).toBe(before);
  c.close();
});

test("a malformed name is EBADREQ", async () => {
  const c = await TestClient.open(open.wsUrl);
  c.send({ op: "resolve", id: 1, name: "bad name!.test" });
  expect(await c.next(1)).toMatchObject({ ev: "error", id: 1, code: "EBADREQ" });
  c.close();
});

describe("with the default policy", () => {
  test('resolve("localhost") is denied, before any look-up', async () => {
    const c = await TestClient.open(guarded.wsUrl);
    const before = dns.queries.length;
    c.send({ op: "resolve", id: 1, name: "localhost" });
    const e = await c.next(1);
    expect(e.ev).toBe("denied");
    expect((e as { msg: string }).msg.length).toBeGreaterThan(0);
    expect(dns.queries.slice(before)).toEqual([]);
    c.close();
  });

  test("only the addresses that pass are answered; a name with none passing is denied", async () => {
    const c = await TestClient.open(guarded.wsUrl);
    c.send({ op: "resolve", id: 1, name: "mixed.test" });
    const e = await c.next(1);
    expect(e.ev).toBe("resolved");
    expect([...(e as { addrs: string[] }).addrs].sort()).toEqual(["2001:4860::8888", "93.184.216.34"]);
    c.send({ op: "resolve", id: 2, name: "private.test" });
    expect((await c.next(2)).ev).toBe("denied");
    c.send({ op: "resolve", id: 3, name: "127.0.0.1" });
    expect((await c.next(3)).ev).toBe("denied");
    c.close();
  });
});

test("look-ups in flight are capped per session: the excess is ELIMIT, not an unbounded queue", async () => {
  const { MAX_LOOKUPS_IN_FLIGHT } = await import("../src/constants.ts");
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const srv = await startServer({ noPolicy: true, resolver: async () => (await gate, ["127.0.0.1"]) });
  const c = await TestClient.open(srv.wsUrl);
  const n = MAX_LOOKUPS_IN_FLIGHT + 5;
  for (let id = 1; id <= n; id++) c.send({ op: "resolve", id, name: `n${id}.test` });
  const over = await Promise.all(Array.from({ length: 5 }, (_, i) => c.next(MAX_LOOKUPS_IN_FLIGHT + 1 + i)));
  expect(over.every((e) => e.ev === "error" && e.code === "ELIMIT")).toBe(true);
  release();
  const ok = await Promise.all(Array.from({ length: MAX_LOOKUPS_IN_FLIGHT }, (_, i) => c.next(i + 1)));
  expect(ok.every((e) => e.ev === "resolved")).toBe(true);
  c.close();
  await srv.stop();
});

test("a look-up that times out keeps its slot in the budget until the resolver itself is done", async () => {
  let answer!: (addrs: string[]) => void;
  const policy = unrestrictedPolicy();
  const g: GatePolicy = { rules: policy.rules, bind: policy, resolver: () => new Promise<string[]>((r) => (answer = r)), dnsTimeoutMs: 20 };
  let inFlight = 0;
  const budget: LookupBudget = { max: 1, tryTake: () => inFlight < 1 && ++inFlight > 0, give: () => void inFlight-- };
  const v = await pass(g, { op: "resolve", host: "slow.test" }, budget);
  expect(v.ok || v.refused ? "" : v.code).toBe("ETIMEDOUT");
  // The client has its answer, but the resolver is still at work: the slot is still taken.
  expect(inFlight).toBe(1);
  const next = pass(g, { op: "resolve", host: "other.test" }, budget);
  expect(next instanceof Promise || next.ok || next.refused ? "" : next.code).toBe("ELIMIT");
  answer(["93.184.216.34"]);
  await waitFor(() => inFlight === 0, "the slot given back once the look-up ended");
});
