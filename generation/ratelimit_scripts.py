"""The Lua scripts of :mod:`generation.ratelimit_redis` (the rules of :mod:`generation.ratelearn`, run in Redis so
every process sharing a key books, logs and learns through one atomic step). Keys and arguments: see each script.
"""

# Shared prologue: Redis's clock, the pace hash, and the admission check (log the send unless the last window
# already holds the rate's share). ARGV[1] window, ARGV[2] keep. KEYS[1] pace, KEYS[4] sent, KEYS[6] seq.
PROLOGUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local function admit(rate)
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - keep)
  if rate > 0 then  -- generation.ratelimit.room: the window's share, and a quarter's share and one a quarter
    local spans = {{window, math.max(1, math.floor(rate * window))}, {window / 4, math.ceil(rate * window / 4) + 1}}
    for _, s in ipairs(spans) do
      local lo = string.format('(%.6f', now - s[1])
      if redis.call('ZCOUNT', KEYS[4], lo, '+inf') >= s[2] then
        local oldest = redis.call('ZRANGEBYSCORE', KEYS[4], lo, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
        return math.max(0.001, tonumber(oldest[2]) + s[1] - now)
      end
    end
  end
  redis.call('ZADD', KEYS[4], now, string.format('%.6f:', now) .. redis.call('INCR', KEYS[6]))
  redis.call('PEXPIRE', KEYS[4], math.ceil(keep * 1000) + 1000)
  redis.call('PEXPIRE', KEYS[6], math.ceil(keep * 1000) + 60000)
  return 0
end
local function num(v, default) return tonumber(v or '') or default end
local function give_back(id, from, n)  -- a lease's permits never sent leave the send log
  if id == '-' then return end
  local members = {}
  for i = tonumber(from), tonumber(n) - 1 do members[#members + 1] = id .. ':' .. i end
  if #members > 0 then redis.call('ZREM', KEYS[4], unpack(members)) end
end
"""

# KEYS: pace, requests, tokens, sent, refused, seq. ARGV: window, keep, ceiling rps, learn, ramp start, ramp s,
# probe every, probe step, request burst s, token rate, token burst, tokens, plateau s, ramp factor, near, lease
# wanted, lease s, then a lease given back (id or '-', first unsent permit, permits). Returns "wait rate admitted
# phase permits lease_id" (permits > 1: a lease, admitted and logged at its slots).
BOOK = PROLOGUE + """
local h = redis.call('HMGET', KEYS[1], 'rps', 'phase', 'changed_at', 'hold_until', 'cut_at')
local ceiling, learn = tonumber(ARGV[3]), ARGV[4] == '1'
local rps, phase, changed = num(h[1], nil), h[2], num(h[3], 0)
if rps == nil and ceiling <= 0 and learn then
  rps, phase, changed = tonumber(ARGV[5]), 'ramp', now
  redis.call('HSET', KEYS[1], 'rps', rps, 'phase', phase, 'changed_at', now)
end
give_back(ARGV[18], ARGV[19], ARGV[20])
local tat = num(redis.call('GET', KEYS[2]), 0)
local ramp_factor, ramp_s, near = tonumber(ARGV[14]), tonumber(ARGV[6]), tonumber(ARGV[15])
local recent = 0  -- sends in the last window (the ramp's: it steps on while they near the pace, leases while not)
if rps ~= nil and phase == 'ramp' then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - keep)
  recent = redis.call('ZCOUNT', KEYS[4], string.format('(%.6f', now - window), '+inf')
end
local binding = tat > now or (rps ~= nil and phase == 'ramp' and recent >= near * rps * window)
local settled = phase == 'ramp' or now - num(h[5], 0) >= tonumber(ARGV[13])  -- the plateau after a cut is over
if rps ~= nil and binding and settled then  -- the pace holds requests back: ramp (a factor) or probe (a step)
  local factor, every = 1 + tonumber(ARGV[8]), tonumber(ARGV[7])
  if phase == 'ramp' then factor, every = ramp_factor, ramp_s end
  if now - changed >= every then
    rps = rps * factor
    if ceiling > 0 and rps >= ceiling then
      rps = nil
      redis.call('HDEL', KEYS[1], 'rps', 'phase')
      redis.call('HSET', KEYS[1], 'changed_at', now)
    else
      redis.call('HSET', KEYS[1], 'rps', rps, 'changed_at', now)
    end
  end
end
redis.call('EXPIRE', KEYS[1], 86400)
local rate = rps or ceiling
if ceiling > 0 and rate > ceiling then rate = ceiling end
local start = math.max(now, num(h[4], 0))
local wait = start - now
local shown = phase or (ceiling > 0 and 'ceiling' or 'off')
if rps == nil then shown = ceiling > 0 and 'ceiling' or 'off' end
-- A lease: the ramp, no 429 ever seen on this key, no hold, no tokens to count, the pace neither holding anyone
-- back nor neared by the sends: n slots booked and logged at once, spent by the caller's process.
local want = tonumber(ARGV[16])
local unheard = h[5] == false  -- no 429 ever on this key
if want > 1 and rps ~= nil and phase == 'ramp' and unheard and wait <= 0 and tonumber(ARGV[10]) <= 0 and tat <= now then
  local n = math.min(want, math.floor(rate * tonumber(ARGV[17])))
  if n > 1 and recent + n < near * rate * window then
    local id, members = 'l' .. redis.call('INCR', KEYS[6]), {}
    for i = 0, n - 1 do
      members[#members + 1] = now + i / rate
      members[#members + 1] = id .. ':' .. i
    end
    redis.call('ZADD', KEYS[4], unpack(members))
    redis.call('PEXPIRE', KEYS[4], math.ceil(keep * 1000) + 1000)
    redis.call('PEXPIRE', KEYS[6], math.ceil(keep * 1000) + 60000)
    redis.call('SET', KEYS[2], string.format('%.6f', now + n / rate), 'PX', math.ceil(n / rate * 1000) + 60000)
    return string.format('0 %.6f 1 %s %d %s', rate, shown, n, id)
  end
end
local function book(key, r, burst, units, old)
  if r <= 0 or units <= 0 then return end
  local new_tat = math.max(old, start) + units / r
  redis.call('SET', key, string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 60000)
  wait = math.max(wait, new_tat - burst / r - now)
end
book(KEYS[2], rate, math.max(1, rate * tonumber(ARGV[9])), 1, tat)
book(KEYS[3], tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), num(redis.call('GET', KEYS[3]), 0))
if wait > 0 then return string.format('%.6f %.6f 0 %s 1 -', wait, rate, shown) end
local later = admit(rate)
return string.format('%.6f %.6f %d %s 1 -', later, rate, later > 0 and 0 or 1, shown)
"""

# KEYS: as for BOOK. ARGV: window, keep, rate. 0 when admitted (and logged), -1 in a hold (book again), else
# seconds until the send log has room.
ADMIT = PROLOGUE + """
local hold = num(redis.call('HGET', KEYS[1], 'hold_until'), 0)
if hold > now then return '-1' end
return string.format('%.6f', admit(tonumber(ARGV[3])))
"""

# KEYS: as for BOOK. ARGV: window, keep, sent age, hold s, cut, min rps, ceiling, learn, min evidence, then a
# lease given back (as for BOOK), then the first cut (of the accepted rate), then the given limit's doubt window.
# Returns "new rate cut" (new: 1 for the first refusal of a burst; cut: 1 when the pace was cut, which a given
# limit is only at its second burst within the doubt window: generation.ratelearn, ``ceiling``).
REFUSED = PROLOGUE + """
give_back(ARGV[10], ARGV[11], ARGV[12])
local sent_at = now - tonumber(ARGV[3])
redis.call('ZADD', KEYS[5], sent_at, string.format('%.6f:', now) .. redis.call('INCR', KEYS[6]))
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - keep)
redis.call('PEXPIRE', KEYS[5], math.ceil(keep * 1000) + 1000)
local h = redis.call('HMGET', KEYS[1], 'rps', 'cut_at', 'cuts', 'hold_until', 'phase')
redis.call('HSET', KEYS[1], 'hold_until', math.max(num(h[4], 0), now + tonumber(ARGV[4])))
local ceiling, learn = tonumber(ARGV[7]), ARGV[8] == '1'
local rate = num(h[1], ceiling)
if ceiling > 0 and rate > ceiling then rate = ceiling end
if sent_at < num(h[2], 0) + window then return string.format('0 %.6f 0', rate) end
redis.call('HSET', KEYS[1], 'cut_at', now)
local doubted = ceiling > 0 and learn and h[2] ~= false and now - tonumber(h[2]) < tonumber(ARGV[14])
if (h[1] == false and not doubted) or (ceiling <= 0 and not learn) then  -- a given limit is trusted once
  return string.format('1 %.6f 0', rate)
end
local lo = string.format('(%.6f', sent_at - window)
local accepted = redis.call('ZCOUNT', KEYS[4], lo, sent_at) - redis.call('ZCOUNT', KEYS[5], lo, sent_at)
local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if h[5] == 'ramp' and accepted < tonumber(ARGV[9]) and (oldest[2] == nil or tonumber(oldest[2]) > sent_at - window) then
  redis.call('HSET', KEYS[1], 'changed_at', now + window)  -- too early to tell: a hold, no ramping for a while
  return string.format('1 %.6f 0', rate)
end
accepted = math.max(0, accepted) / window
local cut = tonumber(ARGV[5])  -- later bursts: CUT of the pace only
if h[5] == 'ramp' then
  if rate <= 0 or accepted < rate then rate = accepted end
  cut = tonumber(ARGV[13])
end
rate = math.max(tonumber(ARGV[6]), rate * cut)
redis.call('HSET', KEYS[1], 'rps', rate, 'phase', 'learned', 'changed_at', now, 'cuts', num(h[3], 0) + 1)
redis.call('EXPIRE', KEYS[1], 86400)
return string.format('1 %.6f 1', rate)
"""


# KEYS: as for BOOK. ARGV: hold seconds. Every caller sharing the pace waits at least that long.
HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local hold = tonumber(redis.call('HGET', KEYS[1], 'hold_until') or '0') or 0
redis.call('HSET', KEYS[1], 'hold_until', math.max(hold, now + tonumber(ARGV[1])))
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""
