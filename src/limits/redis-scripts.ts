// The Lua scripts behind the Redis counters (data model: docs/cluster-limits.md).
// Each runs atomically in Redis, so a check and the take it guards cannot interleave with
// another instance's. Times come from Redis's own clock (TIME), so instances whose clocks
// disagree still agree on when a lease expires.

export interface RedisScript {
  readonly name: string;
  readonly source: string;
  /** SHA-1 of the source, for EVALSHA. */
  readonly sha: string;
}

function script(name: string, source: string): RedisScript {
  return { name, source, sha: new Bun.CryptoHasher("sha1").update(source).digest("hex") };
}

// Milliseconds on Redis's clock, and a key-lifetime bump that only ever extends: a lease set
// outlives its newest member by a second, so a key whose holders all died disappears.
const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function keep(k, ms)
  local left = redis.call('PTTL', k)
  if left < ms + 1000 then redis.call('PEXPIRE', k, ms + 1000) end
end
`;

/**
 * KEYS: one lease set per limited key. ARGV[1]: lease ms, ARGV[2]: lease id, ARGV[2+i]: max for
 * KEYS[i]. Drops expired leases, then adds the lease to every set if every set has room.
 * Returns 0 when taken, else the index (1-based) of the first full set, having taken nothing.
 */
export const ACQUIRE = script(
  "acquire",
  PRELUDE +
    `
local ms = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[i + 2]) then return i end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now + ms, ARGV[2])
  keep(KEYS[i], ms)
end
return 0
`,
);

/**
 * KEYS[i] holds lease id ARGV[i+1]; ARGV[1]: lease ms. Pushes each lease's expiry to now + ms.
 * A lease that had already expired and been removed is added back (its holder is still alive, so
 * the count should include it again). Returns how many had to be added back.
 */
export const RENEW = script(
  "renew",
  PRELUDE +
    `
local ms = tonumber(ARGV[1])
local readded = 0
for i = 1, #KEYS do
  readded = readded + redis.call('ZADD', KEYS[i], now + ms, ARGV[i + 1])
  keep(KEYS[i], ms)
end
return readded
`,
);

/** KEYS[i] loses lease id ARGV[i]. Returns how many were still there. */
export const RELEASE = script(
  "release",
  `
local n = 0
for i = 1, #KEYS do n = n + redis.call('ZREM', KEYS[i], ARGV[i]) end
return n
`,
);

/**
 * KEYS[i]: a daily byte total; ARGV[1]: seconds to keep a total; ARGV[i+1]: bytes to add
 * (0: only read). Returns every key's total after the additions.
 */
export const ADD_BYTES = script(
  "add-bytes",
  `
local keepSecs = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  if tonumber(ARGV[i + 1]) > 0 then
    out[i] = redis.call('INCRBY', KEYS[i], ARGV[i + 1])
    redis.call('EXPIRE', KEYS[i], keepSecs)
  else
    out[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
end
return out
`,
);

export const SCRIPTS: readonly RedisScript[] = [ACQUIRE, RENEW, RELEASE, ADD_BYTES];
