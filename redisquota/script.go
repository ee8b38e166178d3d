package redisquota

import "github.com/redis/go-redis/v9"

// casScript writes a bucket's state and leases if they are as the writer read them: the compare-and-set
// of every Take and Done (see step). It holds none of the model, which runs in Go; it only compares and
// writes, so that the read-modify-write is atomic across the fleet.
//
// KEYS[1] is the bucket's state, an encoded polite.Quota (a string); KEYS[2] its leases (a sorted set,
// one member per request in flight, scored by when it lapses, in Unix milliseconds).
//
// ARGV: [1] the state the write expects ("" for none), [2] the state to write, [3] when the keys expire
// (Unix ms) unless a lease runs later, [4] the retention (ms), [5] "1" to drop every lease (the state
// expected is none or unreadable, so the leases kept with it are no request's), [6] n, the number of
// leases to remove, [7..6+n] their members, then pairs of score and member of leases to add.
//
// The write goes through when the state is the one expected and every lease to remove is still there.
// It returns {1}; else {0, the state ("" for none), the leases as member, score, member, score...},
// which are what the next attempt expects.
var casScript = redis.NewScript(`
local st, ls = KEYS[1], KEYS[2]
local cur = redis.call('GET', st) or ''
local n = tonumber(ARGV[6])
local ok = cur == ARGV[1]
if ok then
  for i = 7, 6 + n do
    if not redis.call('ZSCORE', ls, ARGV[i]) then
      ok = false
      break
    end
  end
end
if not ok then
  return {0, cur, redis.call('ZRANGE', ls, 0, -1, 'WITHSCORES')}
end
if ARGV[2] ~= cur then
  redis.call('SET', st, ARGV[2])
end
if ARGV[5] == '1' then
  redis.call('DEL', ls)
elseif n > 0 then
  redis.call('ZREM', ls, unpack(ARGV, 7, 6 + n))
end
if #ARGV > 6 + n then
  redis.call('ZADD', ls, unpack(ARGV, 7 + n))
end
local exp = tonumber(ARGV[3])
local top = redis.call('ZRANGE', ls, -1, -1, 'WITHSCORES')
if top[2] then
  exp = math.max(exp, tonumber(top[2]) + tonumber(ARGV[4]))
end
redis.call('PEXPIREAT', st, exp)
redis.call('PEXPIREAT', ls, exp)
return {1}
`)
