// An Ed25519 public key as the policy file writes it (`[wisp.users.NAME] public_key`), read
// strictly: 32 bytes in hex or base64, a point on the curve (RFC 8032 §5.1.3), and not one of
// the eight points of small order. The last check is not pedantry: with a small-order key, a
// signature anyone can write down without a private key verifies for every challenge (Web
// Crypto accepts it), so a placeholder such as "AAAA…=" would let anybody log in as that user.
// Pure: no I/O, BigInt arithmetic only; speed does not matter (run once per key at load).

export class Ed25519KeyError extends Error {
  override name = "Ed25519KeyError";
}

const P = 2n ** 255n - 19n;
const D = mod(-121665n * inverse(121666n));
/** √-1 mod p. */
const SQRT_M1 = pow(2n, (P - 1n) / 4n);

function mod(a: bigint): bigint {
  const r = a % P;
  return r < 0n ? r + P : r;
}

function pow(base: bigint, exp: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return result;
}

function inverse(a: bigint): bigint {
  return pow(a, P - 2n);
}

/** hex (64 digits) or base64 / base64url (padded or not) → bytes; null when it is neither. */
function decodeText(text: string): Uint8Array | null {
  const s = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(s)) return Uint8Array.from(s.match(/../g)!, (h) => parseInt(h, 16));
  if (/^[A-Za-z0-9+/]{43}=?$/.test(s) || /^[A-Za-z0-9_-]{43}$/.test(s)) {
    const b64 = s.replace(/-/g, "+").replace(/_/g, "/").replace(/=$/, "") + "=";
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    // A last character that leaves stray bits set would also decode: refuse the ambiguity.
    if (bytes.length !== 32 || btoa(String.fromCharCode(...bytes)) !== b64) return null;
    return bytes;
  }
  return null;
}

type Point = { x: bigint; y: bigint; z: bigint; t: bigint };

/** Extended-coordinates addition on the twisted Edwards curve (a = -1). */
function add(p: Point, q: Point): Point {
  const a = mod((p.y - p.x) * (q.y - q.x));
  const b = mod((p.y + p.x) * (q.y + q.x));
  const c = mod(2n * D * p.t * q.t);
  const d = mod(2n * p.z * q.z);
  const e = b - a;
  const f = d - c;
  const g = d + c;
  const h = b + a;
  return { x: mod(e * f), y: mod(g * h), z: mod(f * g), t: mod(e * h) };
}

/** The point encoded by 32 bytes, or why it is none. */
function decodePoint(bytes: Uint8Array): Point | string {
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(i === 31 ? bytes[i]! & 0x7f : bytes[i]!);
  const sign = bytes[31]! >> 7;
  if (y >= P) return "not a canonical point encoding";
  const u = mod(y * y - 1n);
  const v = mod(D * y * y + 1n);
  let x = mod(u * pow(v, 3n) * pow(u * pow(v, 7n), (P - 5n) / 8n));
  const vx2 = mod(v * x * x);
  if (vx2 === mod(-u)) x = mod(x * SQRT_M1);
  else if (vx2 !== u) return "not a point on the Ed25519 curve";
  if (x === 0n && sign === 1) return "not a canonical point encoding";
  if (Number(x & 1n) !== sign) x = P - x;
  return { x, y, z: 1n, t: mod(x * y) };
}

function isIdentity(p: Point): boolean {
  return mod(p.x) === 0n && mod(p.y - p.z) === 0n;
}

/**
 * The 32 raw bytes of the Ed25519 public key `text` (64 hex digits, or base64 / base64url),
 * checked to be a usable key; throws Ed25519KeyError saying what is wrong.
 */
export function parseEd25519PublicKey(text: string): Uint8Array {
  const bytes = decodeText(text);
  if (bytes === null) throw new Ed25519KeyError("expected a raw 32-byte Ed25519 public key as 64 hex digits or 43-44 characters of base64");
  const p = decodePoint(bytes);
  if (typeof p === "string") throw new Ed25519KeyError(`${p}: this is not an Ed25519 public key`);
  let q = p;
  for (let i = 0; i < 3; i++) q = add(q, q); // 8·P
  if (isIdentity(q)) throw new Ed25519KeyError("a point of small order: any signature would verify against it, so it cannot be a key");
  return bytes;
}
