// Wisp v2 password authentication against the policy's [wisp] users.
import { timingSafeEqual } from "node:crypto";

/** Constant-time in the password: compares digests, so length and content leak nothing. */
export function checkPassword(users: ReadonlyMap<string, string>, user: string, password: string): boolean {
  const want = users.get(user);
  const digest = (x: string) => new Bun.CryptoHasher("sha256").update(x).digest();
  const ok = timingSafeEqual(digest(want ?? "\0no such user"), digest(password));
  return want !== undefined && ok;
}
