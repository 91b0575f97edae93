// The one gate (src/net/gate.ts): its verdicts for every operation, and proof from the source
// tree that nothing reaches the socket layer around it.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { pass, type GatePolicy, type LookupBudget } from "../src/net/gate.ts";
import { defaultPolicy, parsePolicy } from "../src/policy/load.ts";

const SRC = join(import.meta.dir, "../src");

function gateFor(toml: string | null, table: Record<string, string[]> = {}, calls: string[] = []): GatePolicy {
  const p = toml === null ? defaultPolicy() : parsePolicy(toml, "gate.test.toml");
  return {
    rules: p.rules,
    bind: p,
    resolver: async (name) => {
      calls.push(name);
      const a = table[name];
      if (!a) throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
      return a;
    },
    dnsTimeoutMs: 1000,
  };
}

describe("verdicts", () => {
  test("an IP literal is judged at once (no promise), canonical, with the deciding rule", () => {
    const g = gateFor(null);
    const v = pass(g, { op: "connect", host: "93.184.216.34", port: 80 });
    expect(v instanceof Promise).toBe(false);
    if (v instanceof Promise || !v.ok) throw new Error("expected an allowed verdict");
    expect(v.value).toMatchObject({ addr: "93.184.216.34", port: 80, name: null, rule: "*" });
  });

  test("hostile literals are refused by the address they are, under the default policy", () => {
    const g = gateFor(null);
    for (const host of ["127.0.0.1", "::ffff:127.0.0.1", "0.0.0.0", "2130706433", "127.1", "0x7f.1", "0177.0.0.1", "[::1]", "169.254.169.254"]) {
      const v = pass(g, { op: "send_to", host, port: 53 });
      if (v instanceof Promise) throw new Error(`${host}: a literal needs no look-up`);
      expect([host, v.ok, v.ok ? "" : v.refused?.rule, v.ok ? "" : v.refused?.code]).toEqual([host, false, "nonpublic", "deny"]);
    }
  });

  test("a name is resolved once and the connection goes to the address that passed", async () => {
    const calls: string[] = [];
    const g = gateFor(null, { "mixed.test": ["10.0.0.1", "93.184.216.34"] }, calls);
    const v = await pass(g, { op: "connect_tls", host: "Mixed.Test.", port: 443 });
    if (!v.ok) throw new Error("expected allowed");
    expect(v.value).toMatchObject({ addr: "93.184.216.34", name: "mixed.test", port: 443 });
    expect(calls).toEqual(["mixed.test"]);
  });

  test("a name that resolves only to loopback is refused; a name refused by a name rule is never looked up", async () => {
    const calls: string[] = [];
    const g = gateFor(`[network]\ndeny = ["nonpublic", "*.blocked.test"]\n`, { "inside.test": ["127.0.0.1", "::1"] }, calls);
    const v = await pass(g, { op: "connect", host: "inside.test", port: 80 });
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.refused?.rule).toBe("nonpublic");
    const w = pass(g, { op: "connect_udp", host: "a.blocked.test", port: 53 });
    expect(w instanceof Promise).toBe(false);
    if (!(w instanceof Promise)) expect(w.ok ? "" : w.refused?.rule).toBe("*.blocked.test");
    expect(calls).toEqual(["inside.test"]);
  });

  test("a failed look-up is an error verdict (code and message), not a refusal", async () => {
    const v = await pass(gateFor(null), { op: "connect", host: "missing.test", port: 80 });
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.refused ? "refused" : v.code).toBe("ENOTFOUND");
  });

  test("the look-up budget: over it, ELIMIT without asking the resolver; each look-up gives its slot back", async () => {
    const calls: string[] = [];
    const g = gateFor(null, { "a.test": ["93.184.216.34"] }, calls);
    let inFlight = 0;
    const budget: LookupBudget = { max: 1, tryTake: () => inFlight < 1 && ++inFlight > 0, give: () => void inFlight-- };
    const first = pass(g, { op: "resolve", host: "a.test" }, budget);
    const second = pass(g, { op: "resolve", host: "a.test" }, budget);
    expect(second instanceof Promise).toBe(false);
    if (!(second instanceof Promise)) expect(second.ok || second.refused ? "" : second.code).toBe("ELIMIT");
    const v = await first;
    expect(v.ok && v.value.addrs).toEqual(["93.184.216.34"]);
    expect(inFlight).toBe(0);
    expect(calls).toEqual(["a.test"]);
  });

  test("resolve answers only the addresses that pass, port-qualified rules aside", async () => {
    const g = gateFor(`[network]\ndeny = ["nonpublic", "*:25"]\n`, { "mixed.test": ["127.0.0.1", "93.184.216.34", "10.1.1.1"] });
    const v = await pass(g, { op: "resolve", host: "mixed.test" });
    expect(v.ok && v.value).toEqual({ name: "mixed.test", addrs: ["93.184.216.34"] });
  });

  test("bind: wildcard or loopback inside bind_ports, anything else refused with the rule", () => {
    const g = gateFor(`[network]\nbind_ports = "4000-4001"\n`);
    const ok = pass(g, { op: "bind", host: "::", port: 4000 });
    expect(ok.ok && ok.value.addr).toBe("::");
    const port = pass(g, { op: "bind", host: "0.0.0.0", port: 5000 });
    expect(port.ok ? "" : [port.refused?.rule, port.refused?.code]).toEqual(["bind_ports", "bind_port"]);
    const addr = pass(g, { op: "bind", host: "93.184.216.34", port: 4000 });
    expect(addr.ok ? "" : addr.refused?.rule).toBe("bind_addrs");
  });
});

describe("no route around the gate", () => {
  const files = (function walk(d: string): string[] {
    return readdirSync(d).flatMap((n) => {
      const p = join(d, n);
      return statSync(p).isDirectory() ? walk(p) : p.endsWith(".ts") ? [p] : [];
    });
  })(SRC);
  const code = (f: string) =>
    readFileSync(f, "utf8")
      .replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
  const where = (re: RegExp) => files.filter((f) => re.test(code(f))).map((f) => relative(SRC, f)).sort();

  test("the policy's destination decisions are called only by the gate (and inside the policy itself)", () => {
    const users = where(/\b(decideAddress|decideName|chooseAddress|filterResolved|decideBind)\s*\(/).filter((f) => !f.startsWith("policy/"));
    expect(users).toEqual(["net/gate.ts"]);
  });

  test("a Cleared target is made only by the gate", () => {
    expect(where(/as Cleared\b/)).toEqual(["net/gate.ts"]);
  });

  test("sockets are opened only where a Cleared target is required", () => {
    expect(where(/Bun\.connect\s*[<(]/)).toEqual(["net/pool.ts", "net/tcp-stream.ts"]);
    expect(where(/Bun\.listen\s*[<(]/)).toEqual(["net/listener.ts"]);
    expect(where(/Bun\.udpSocket\s*\(/)).toEqual(["net/udp-relay.ts"]);
    // …and each of those entry points takes a Cleared.
    const sig = (f: string, re: RegExp) => expect([f, re.test(code(join(SRC, f)))]).toEqual([f, true]);
    sig("net/tcp-stream.ts", /dial\(to: Cleared/);
    sig("net/pool.ts", /take\(stream: TcpStream, to: Cleared/);
    sig("net/pool.ts", /private open\(key: string, to: Cleared\)/);
    sig("net/listener.ts", /readonly local: Cleared/);
    sig("net/udp-relay.ts", /send\(data: Uint8Array, to: Cleared\)/);
    sig("net/udp-relay.ts", /open\(owner: UdpOwner, id: number, peer: Cleared\)/);
  });

  test("every session and adapter path reaches the network through the gate", () => {
    // The session judges with pass(); no adapter or server module opens sockets itself.
    expect(where(/\bpass\(this\.gate/)).toEqual(["session/session.ts"]);
    for (const f of files.filter((f) => /\/(adapters|server|session)\//.test(f)))
      expect([relative(SRC, f), /Bun\.(connect|listen|udpSocket)\s*[<(]/.test(code(f))]).toEqual([relative(SRC, f), false]);
  });
});
