package redisquota

import "github.com/redis/go-redis/v9"

// The scripts port polite's in-process bucket (memBucket in memstore.go) to Lua, one atomic step per
// Store call. Times are Unix milliseconds from the caller's clock; 0 means unknown (the zero time.Time).
//
// KEYS[1] is the bucket's hash:
//
//	k   known: a response has described the bucket (0/1)
//	l   limit (0: unknown)
//	r   remaining, as the server last said it
//	rs  reset (0: unknown)
//	sp  how much earlier than rs the window may end (ms; see polite.Observation.ResetSpread)
//	w   window (ms, 0: unknown)
//	pr  probing: the window passed and a probe is out (0/1)
//	b   blocked: the server asked for no request before this (0: no hold)
//	rf  refills: a probe's answer after a window spent down to the reserve has shown how the bucket
//	    refills (0/1); until then, one request of a window is kept back if l >= 10
//	pc  paced: the bucket is taken for a sliding window (0/1)
//	pq  pace rate, per ms: 0.98*(l-1)/w when the pacing began
//	pb  pace burst: 1 + floor((l-1)/100) when the pacing began (polite's paceBurst); 0 in a hash written
//	    before it was kept, read as 1
//	pt  pace tokens (a token bucket at pq of burst pb, empty when the pacing begins)
//	pl  when pt was computed
//	u   last use
//	n   sequence of lease ids
//
// KEYS[2] is a sorted set of leases: one member per slot in flight, scored by when it lapses.
const prelude = `
local st, ls = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local slack = 1000
local pace = 0.98
local reserveMin = 10

local b = {}
local h = redis.call('HGETALL', st)
for i = 1, #h, 2 do b[h[i]] = tonumber(h[i + 1]) end
for _, f in ipairs({'k', 'l', 'r', 'rs', 'sp', 'w', 'pr', 'rf', 'b', 'pc', 'pq', 'pb', 'pt', 'pl', 'u', 'n'}) do
  if b[f] == nil then b[f] = 0 end
end

redis.call('ZREMRANGEBYSCORE', ls, '-inf', now)
local inflight = redis.call('ZCARD', ls)

local function sliding(on)
  b.pc = 0
  if on and b.l > 1 and b.w > 0 then
    b.pc, b.pq, b.pb, b.pt, b.pl = 1, pace * (b.l - 1) / b.w, 1 + math.floor((b.l - 1) / 100), 0, now
  end
end

local function reserve()
  if b.rf == 1 or b.l < reserveMin then return 0 end
  return 1
end

local function rate()
  return b.pq
end

local function tokens()
  local last = b.pl
  if now < last then last = now end
  return math.min(math.max(1, b.pb), b.pt + (now - last) * rate())
end

local function save()
  redis.call('HSET', st, 'k', b.k, 'l', b.l, 'r', b.r, 'rs', b.rs, 'sp', b.sp, 'w', b.w, 'pr', b.pr, 'rf', b.rf, 'b', b.b,
    'pc', b.pc, 'pq', b.pq, 'pb', b.pb, 'pt', b.pt, 'pl', b.pl, 'u', b.u, 'n', b.n)
  local exp = math.max(b.rs, b.b, b.u, now) + keep
  local top = redis.call('ZRANGE', ls, -1, -1, 'WITHSCORES')
  if top[2] ~= nil then
    exp = math.max(exp, tonumber(top[2]))
    redis.call('PEXPIREAT', ls, exp)
  end
  redis.call('PEXPIREAT', st, exp)
end
`

// takeScript: ARGV now, keep, lease. Returns {ok, retryAt, reason}.
var takeScript = redis.NewScript(prelude + `
local lease = tonumber(ARGV[3])
b.u = now

local function wait(at, reason)
  save()
  return {0, math.ceil(at), reason}
end

if now < b.b then
  return wait(b.b, 'server asked to retry later')
elseif b.k == 0 then
  -- No headers seen yet: no throttling, but count what is in flight.
elseif b.pc == 1 then
  local t = tokens()
  if t < 1 then
    return wait(now + (1 - t) / rate(), 'pacing a sliding window')
  end
  b.pt, b.pl = t - 1, now
elseif b.rs ~= 0 and now < b.rs then
  if b.r - inflight <= reserve() then
    return wait(b.rs, 'quota spent until reset')
  end
elseif b.rs == 0 and b.r - inflight > 0 then
  -- The server gave no reset: spend what it said remains.
elseif b.pr == 0 or inflight == 0 then
  -- The window has passed: one request goes first to learn the new budget.
  b.pr = 1
else
  return wait(0, "waiting for the new window's budget")
end
b.n = b.n + 1
redis.call('ZADD', ls, now + lease, b.n)
save()
return {1, 0, ''}
`)

// doneScript: ARGV now, keep, took, status, hasRL, limit, remaining, reset, window, retryAt, spread.
// Returns 1 when the observation fits the bucket, else 0.
var doneScript = redis.NewScript(prelude + `
local took = ARGV[3] == '1'
local status = tonumber(ARGV[4])
local hasRL = ARGV[5] == '1'
local rl = {l = tonumber(ARGV[6]), r = tonumber(ARGV[7]), rs = tonumber(ARGV[8]), w = tonumber(ARGV[9]),
  sp = tonumber(ARGV[11]) or 0}
local retryAt = tonumber(ARGV[10])
if rl.rs == 0 then rl.sp = 0 end

local function fits()
  local otherLimit = rl.l > 0 and b.l > 0 and rl.l ~= b.l
  if b.k == 0 or b.rs == 0 then return true end
  -- Once the window has passed anything fits, but a refusal reporting another limit: another counter's.
  if now >= b.rs then return not (otherLimit and status == 429) end
  if otherLimit then return false end
  if rl.rs == 0 or b.w <= 0 then return true end
  -- This window's: within slack, or later by up to the answer's spread, or earlier by up to the bucket's.
  local off = (rl.rs - b.rs) % b.w
  return off <= slack + rl.sp or b.w - off <= slack + b.sp
end

local function learn()
  if rl.rs ~= 0 and b.rs ~= 0 and rl.rs < b.rs - slack - b.sp then
    return -- a response from an earlier window, overtaken by newer ones
  end
  if rl.rs ~= 0 and rl.rs <= now then
    return -- a window already over: its count says nothing now
  end
  b.k = 1
  if rl.l > 0 then b.l = rl.l end
  if rl.w > 0 then b.w = rl.w end
  if rl.rs == 0 or b.rs == 0 then
    b.r, b.rs, b.sp = rl.r, rl.rs, rl.sp
  elseif rl.rs > b.rs + slack and rl.rs - rl.sp >= b.rs + slack then
    -- A new window; the spacing of resets measures it when the server does not say, if both are about as
    -- late (the larger reading: a window measured short would pace a sliding window too fast).
    local gap = rl.rs - b.rs + math.max(b.sp - rl.sp, 0)
    if rl.w == 0 and math.abs(b.sp - rl.sp) <= slack and (b.w == 0 or gap < b.w) then b.w = gap end
    if b.pr == 1 and b.l > 0 and b.pc == 0 then
      local slide = rl.r < math.floor(b.l / 2)
      -- Only a window spent down to the reserve tells the kinds apart.
      local spent = b.r <= reserve()
      sliding(slide)
      if slide or spent then b.rf = 1 end
    end
    b.r, b.rs, b.sp, b.pr = rl.r, rl.rs, rl.sp, 0
  else
    if rl.rs < b.rs - slack then
      -- Within the bucket's spread: the window ends no later than this answer says.
      local lo = math.max(b.rs - b.sp, rl.rs - rl.sp)
      b.rs, b.sp = rl.rs, math.max(rl.rs - lo, 0)
    end
    if b.pc == 1 then
      b.r = rl.r -- a sliding window refills: the newest word counts
    else
      b.r = math.min(b.r, rl.r) -- answers of one window arrive out of order: the lowest is the newest
    end
  end
end

if took and inflight > 0 then
  redis.call('ZPOPMAX', ls)
end
local ok = (not hasRL) or fits()
if status >= 200 and status < 300 then
  b.b = 0
end
if ok then
  if retryAt > b.b then
    b.b = retryAt
    sliding(false)
  end
  if hasRL then learn() end
end
if not hasRL and took then
  b.pr = 0
end
save()
if ok then return 1 end
return 0
`)
