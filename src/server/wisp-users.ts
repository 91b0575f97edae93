// Wisp v2 authentication against the policy's [wisp] users: password (extension 0x02) and
// Ed25519 key (0x03). Each answers with who logged in and under which profile, or null.
import { timingSafeEqual } from "node:crypto";
import type { WispLogin } from "../adapters/wisp.ts";
import type { WispUser } from "../policy/config.ts";
import { WISP_ED25519_SIGNATURE_BYTES, WISP_KEY_ALG, type WispKeyAnswer } from "../protocol/wisp.ts";

type Users = ReadonlyMap<string, WispUser>;

const sha256 = (x: string | Uint8Array) => new Bun.CryptoHasher("sha256").update(x).digest();

/** Constant-time in the password: compares digests, so length and content leak nothing. */
export function checkPassword(users: Users, user: string, password: string): WispLogin | null {
  const u = users.get(user);
  const want = u?.password ?? null;
  const ok = timingSafeEqual(sha256(want ?? "\0no such user"), sha256(password));
  return want !== null && ok ? { user, profile: u!.profile } : null;
}

interface KeyEntry {
  user: string;
  profile: string | null;
  key: Promise<CryptoKey>;
}

interface TableIndex {
  /** SHA-256 of each public key (hex) → its user. */
  keys: Map<string, KeyEntry>;
  /** Which Wisp authentication the table offers. */
  methods: { password: boolean; key: boolean };
}

/** Per users table (one per policy generation), built on first use. */
const indexes = new WeakMap<Users, TableIndex>();

function indexOf(users: Users): TableIndex {
  let index = indexes.get(users);
  if (index) return index;
  index = { keys: new Map(), methods: { password: false, key: false } };
  for (const [user, u] of users) {
    index.methods.password ||= u.password !== null;
    if (u.publicKey === null) continue;
    index.methods.key = true;
    const key = crypto.subtle.importKey("raw", u.publicKey as Uint8Array<ArrayBuffer>, "Ed25519", false, ["verify"]);
    key.catch(() => {}); // a key the policy parser let through always imports; never an unhandled rejection
    index.keys.set(sha256(u.publicKey).toString("hex"), { user, profile: u.profile, key });
  }
  indexes.set(users, index);
  return index;
}

/**
 * The user whose public key hashes to the answer's hash and signed `challenge`; null for an
 * unknown key, another algorithm, or a signature that does not verify.
 */
export async function checkKey(users: Users, answer: WispKeyAnswer, challenge: Uint8Array): Promise<WispLogin | null> {
  if (answer.algorithm !== WISP_KEY_ALG.ed25519 || answer.signature.length !== WISP_ED25519_SIGNATURE_BYTES) return null;
  const entry = indexOf(users).keys.get(Buffer.from(answer.keyHash).toString("hex"));
  if (!entry) return null;
  try {
    const ok = await crypto.subtle.verify("Ed25519", await entry.key, answer.signature as Uint8Array<ArrayBuffer>, challenge as Uint8Array<ArrayBuffer>);
    return ok ? { user: entry.user, profile: entry.profile } : null;
  } catch {
    return null;
  }
}

/** Which Wisp authentication the users table offers (asked at every upgrade: kept per table). */
export function wispAuthMethods(users: Users): { password: boolean; key: boolean } {
  return indexOf(users).methods;
}
