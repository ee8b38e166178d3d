package redisquota

import "github.com/redis/go-redis/v9"

// casScript writes a bucket's state and leases if they are as the writer read them: the compare-and-set
// of every Take and Done (see step). It holds none of the model, which runs in Go; it only compares and
// writes, so that the read-modify-write is atomic across the fleet.
//
// KEYS[1] is the bucket's state, an encoded polite.Quota (a string); KEYS[2] its leases (a sorted set,
// one member per request in flight, scored by when it lapses, in Unix milliseconds); KEYS[3] how many
// writes failed since the last that went through (a counter that expires); KEYS[4] the bucket's turn:
// the name of the writer whose write goes next (a string that expires).
//
// ARGV: [1] the state the write expects ("" for none), [2] the state to write, [3] when the keys expire
// (Unix ms) unless a lease runs later, [4] the retention (ms), [5] "1" to drop every lease (the state
// expected is none or unreadable, so the leases kept with it are no request's), [6] how long the counter
// of failed writes lives (ms), [7] the writer's name, [8] how long a turn it claims lasts (ms; 0: it
// claims none), [9] n, the number of leases to remove, [10..9+n] their members, then pairs of score
// and member of leases to add.
//
// The write goes through when no other writer holds the turn, the state is the one expected and every
// lease to remove is still there: the script ends the writer's turn, resets the count of failed writes
// and returns {1, that count}. Else it counts the failure, gives the writer the turn if it is free, and
// returns {0, the state ("" for none), the leases as member, score, member, score..., 1 if another
// writer holds the turn else 0}: what the writer's next attempt expects.
var casScript = redis.NewScript(`
local st, ls, lost, tk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local me = ARGV[7]
local turn = redis.call('GET', tk)
local blocked = turn and turn ~= me
local cur = redis.call('GET', st) or ''
local n = tonumber(ARGV[9])
local ok = not blocked and cur == ARGV[1]
if ok then
  for i = 10, 9 + n do
    if not redis.call('ZSCORE', ls, ARGV[i]) then
      ok = false
      break
    end
  end
end
if not ok then
  redis.call('INCR', lost)
  redis.call('PEXPIRE', lost, ARGV[6])
  if not turn and ARGV[8] ~= '0' then
    redis.call('SET', tk, me, 'PX', ARGV[8])
  end
  return {0, cur, redis.call('ZRANGE', ls, 0, -1, 'WITHSCORES'), blocked and 1 or 0}
end
if turn then
  redis.call('DEL', tk)
end
local failed = tonumber(redis.call('GET', lost) or '0')
if failed > 0 then
  redis.call('DEL', lost)
end
if ARGV[2] ~= cur then
  redis.call('SET', st, ARGV[2])
end
if ARGV[5] == '1' then
  redis.call('DEL', ls)
elseif n > 0 then
  redis.call('ZREM', ls, unpack(ARGV, 10, 9 + n))
end
if #ARGV > 9 + n then
  redis.call('ZADD', ls, unpack(ARGV, 10 + n))
end
local exp = tonumber(ARGV[3])
local top = redis.call('ZRANGE', ls, -1, -1, 'WITHSCORES')
if top[2] then
  exp = math.max(exp, tonumber(top[2]) + tonumber(ARGV[4]))
end
redis.call('PEXPIREAT', st, exp)
redis.call('PEXPIREAT', ls, exp)
return {1, failed}
`)
