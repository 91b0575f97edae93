// [wisp] users: the short form (`alice = "password"`), the table form with a password, an
// Ed25519 public key and a profile, and every way to get them wrong — each a start-up error
// that names the file, the key and the value.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ed25519KeyError, parseEd25519PublicKey } from "../src/policy/ed25519-key.ts";
import { PolicyFileError, loadPolicyFile, parsePolicy } from "../src/policy/load.ts";

function failure(toml: string): PolicyFileError {
  try {
    parsePolicy(toml, "wisp.toml");
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyFileError);
    return e as PolicyFileError;
  }
  throw new Error("expected the policy to be refused");
}

function fails(toml: string, key: string, ...fragments: string[]): void {
  const e = failure(toml);
  expect(e.file).toBe("wisp.toml");
  expect(e.key).toBe(key);
  expect(e.message).toStartWith(`wisp.toml: ${key}: `);
  for (const f of fragments) expect(e.message).toContain(f);
}

async function newKey(): Promise<{ raw: Uint8Array; hex: string; b64: string; b64url: string }> {
  const kp = (await crypto.subtle.generateKey("Ed25519", true, ["sign", "verify"])) as CryptoKeyPair;
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", kp.publicKey));
  const b = Buffer.from(raw);
  return { raw, hex: b.toString("hex"), b64: b.toString("base64"), b64url: b.toString("base64url") };
}

const PROFILES = `
[profiles.free.network]
allow = ["*:443"]
[profiles.pro.limits]
max_sessions_per_identity = 9
`;

describe("[wisp] users", () => {
  test("the short form still means a password and the top-level policy", () => {
    const cfg = parsePolicy('[wisp]\nusers = { alice = "s3cret" }', "wisp.toml");
    expect(cfg.wisp.users.get("alice")).toEqual({ password: "s3cret", publicKey: null, profile: null });
  });

  test("the table form: password, public key (hex, base64, base64url) and profile", async () => {
    const [a, b, c] = [await newKey(), await newKey(), await newKey()];
    const cfg = parsePolicy(
      `[wisp.users.alice]
password = "pw"
profile = "free"
[wisp.users.bob]
public_key = "${a.hex}"
profile = "pro"
[wisp.users.carol]
password = "both"
public_key = "${b.b64}"
[wisp.users.dave]
public_key = "${c.b64url}"
[wisp.users]
eve = "short form next to tables"
${PROFILES}`,
      "wisp.toml",
    );
    expect(cfg.wisp.users.get("alice")).toEqual({ password: "pw", publicKey: null, profile: "free" });
    expect(cfg.wisp.users.get("bob")).toEqual({ password: null, publicKey: a.raw, profile: "pro" });
    expect(cfg.wisp.users.get("carol")).toEqual({ password: "both", publicKey: b.raw, profile: null });
    expect(cfg.wisp.users.get("dave")!.publicKey).toEqual(c.raw);
    expect(cfg.wisp.users.get("eve")).toEqual({ password: "short form next to tables", publicKey: null, profile: null });
  });

  test("a profile must exist, whether [profiles] comes before or after [wisp]", () => {
    fails('[wisp.users.alice]\npassword = "pw"\nprofile = "gold"\n' + PROFILES, "wisp.users.alice.profile", '"gold"', "defined: free, pro");
    fails('[wisp.users.alice]\npassword = "pw"\nprofile = "free"', "wisp.users.alice.profile", '"free"', "no [profiles.NAME] is defined");
    const cfg = parsePolicy(PROFILES + '\n[wisp.users.alice]\npassword = "pw"\nprofile = "free"', "wisp.toml");
    expect(cfg.wisp.users.get("alice")!.profile).toBe("free");
  });

  test("bad public keys are named with their value", async () => {
    const k = await newKey();
    const bad: [string, string][] = [
      ["abcd", "64 hex digits"],
      [k.hex.slice(0, 62), "64 hex digits"],
      [k.hex + "00", "64 hex digits"],
      [k.b64.slice(0, 40), "base64"],
      ["A".repeat(42) + "B=", "base64"], // stray bits in the last character
      ["ff".repeat(31) + "7f", "not a canonical point encoding"],
      ["01" + "00".repeat(31), "small order"], // the identity point: any signature would verify
      ["A".repeat(43) + "=", "small order"], // all zero bytes: of order 4
      ["ec" + "ff".repeat(30) + "7f", "small order"], // order 2
    ];
    for (const [value, why] of bad) {
      fails(`[wisp.users.bob]\npublic_key = "${value}"`, "wisp.users.bob.public_key", JSON.stringify(value), why);
    }
    // Off the curve: about half of all 32-byte strings; this one is found by search, not luck.
    let off: string | null = null;
    for (let i = 0; off === null && i < 1000; i++) {
      const hex = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex");
      try {
        parseEd25519PublicKey(hex);
      } catch (e) {
        if (e instanceof Ed25519KeyError && e.message.includes("not a point on the Ed25519 curve")) off = hex;
      }
    }
    expect(off).not.toBeNull();
    fails(`[wisp.users.bob]\npublic_key = "${off}"`, "wisp.users.bob.public_key", "not a point on the Ed25519 curve");
    fails("[wisp.users.bob]\npublic_key = 5", "wisp.users.bob.public_key", "expected an Ed25519 public key string, got 5");
  });

  test("one key names one user", async () => {
    const k = await newKey();
    fails(`[wisp.users.a]\npublic_key = "${k.hex}"\n[wisp.users.b]\npublic_key = "${k.b64}"`, "wisp.users.b.public_key", "the same key as users.a");
  });

  test("every other mistake", () => {
    fails('[wisp.users.alice]\nprofile = "free"\n' + PROFILES, "wisp.users.alice", "needs a password, a public_key, or both");
    fails("[wisp.users.alice]", "wisp.users.alice", "needs a password, a public_key, or both");
    fails('[wisp.users.alice]\npassword = "pw"\npasword = "typo"', "wisp.users.alice.pasword", "unknown key", "password, public_key, profile");
    fails('[wisp.users.alice]\npassword = 7', "wisp.users.alice.password", "expected a non-empty password string, got 7");
    fails('[wisp.users.alice]\npassword = ""', "wisp.users.alice.password", "non-empty");
    fails('[wisp]\nusers = { alice = "" }', "wisp.users.alice", "non-empty");
    fails('[wisp]\nusers = { alice = ["pw"] }', "wisp.users.alice", "got an array");
    fails('[wisp.users.alice]\npassword = "pw"\nprofile = 3', "wisp.users.alice.profile", "expected a profile name, got 3");
    fails('[wisp.users.alice]\npassword = "pw"\nprofile = ""', "wisp.users.alice.profile", "expected a profile name");
    fails(`[wisp]\nusers = { "${"u".repeat(256)}" = "pw" }`, `wisp.users.${"u".repeat(256)}`, "1 to 255 bytes");
    fails(`[wisp]\nusers = { "${"é".repeat(128)}" = "pw" }`, `wisp.users.${"é".repeat(128)}`, "1 to 255 bytes"); // 256 bytes of UTF-8
    fails(`[wisp]\nusers = { alice = "${"p".repeat(65536)}" }`, "wisp.users.alice", "at most 65535 bytes");
    // Long passwords within Wisp's u16 field are fine.
    expect(parsePolicy(`[wisp]\nusers = { alice = "${"p".repeat(300)}" }`, "wisp.toml").wisp.users.get("alice")!.password).toHaveLength(300);
  });

  test("[wisp] stays server-wide: no users inside a profile", () => {
    fails('[profiles.free.wisp]\nusers = { a = "b" }', "profiles.free.wisp", "holds for the whole server");
  });

  test("a policy file with a bad key fails to load, naming the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "wasmnet-wisp-"));
    const file = join(dir, "policy.toml");
    writeFileSync(file, '[wisp.users.bob]\npublic_key = "not a key"\n');
    expect(() => loadPolicyFile(file)).toThrow(`${file}: wisp.users.bob.public_key: "not a key": expected a raw 32-byte Ed25519 public key`);
  });
});
