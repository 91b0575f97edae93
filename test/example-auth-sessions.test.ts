// examples/auth/sessions.ts: the auth example's log-in sessions expire and are capped, so a
// stream of log-ins cannot grow the app's memory without bound (its app.ts end to end is
// test/example-auth.test.ts).
import { expect, test } from "bun:test";
import { SessionStore } from "../examples/auth/sessions.ts";

test("a session lasts ttlMs, then its cookie is worth nothing and it is gone", () => {
  let now = 1_000_000;
  const store = new SessionStore({ ttlMs: 60_000, maxSessions: 100, now: () => now });
  const sid = store.create("ada");
  expect(sid).toMatch(/^[0-9a-f]{32}$/);
  expect(store.userOf(sid)).toBe("ada");
  now += 59_999;
  expect(store.userOf(sid)).toBe("ada");
  now += 1;
  expect(store.userOf(sid)).toBeNull();
  expect(store.size).toBe(0);
});

test("a log-in drops the sessions that expired, even ones nobody asks about again", () => {
  let now = 0;
  const store = new SessionStore({ ttlMs: 1000, maxSessions: 100, now: () => now });
  for (let i = 0; i < 50; i++) store.create(`user${i}`);
  now = 500;
  const kept = store.create("kept");
  now = 1200;
  const fresh = store.create("fresh");
  expect(store.size).toBe(2);
  expect([store.userOf(kept), store.userOf(fresh)]).toEqual(["kept", "fresh"]);
});

test("at most maxSessions at once: a log-in beyond it ends the oldest", () => {
  const store = new SessionStore({ ttlMs: 3_600_000, maxSessions: 3 });
  const sids = Array.from({ length: 1000 }, (_, i) => store.create(`u${i}`));
  expect(store.size).toBe(3);
  expect(sids.slice(-3).map((s) => store.userOf(s))).toEqual(["u997", "u998", "u999"]);
  expect(store.userOf(sids[0]!)).toBeNull();
});

test("log-out ends that session only", () => {
  const store = new SessionStore({ ttlMs: 60_000, maxSessions: 10 });
  const a = store.create("ada");
  const b = store.create("ada");
  store.end(a);
  expect([store.userOf(a), store.userOf(b)]).toEqual([null, "ada"]);
});
