-- force_take: WeChat's force_refresh limits for the whole fleet: at most
-- ARGV[2] per quota day, ARGV[3] ms apart.
-- KEYS[1] meta; ARGV[1] quota day (YYYYMMDD), ARGV[2] daily limit, ARGV[3] spacing ms
-- Returns {'ok', count} | {'too_soon', wait_ms} | {'over', count}.
-- Fields a foreign writer spoiled (not whole numbers in [0, 2^53)) read as 0.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = redis.call('HMGET', KEYS[1], 'force_day', 'force_count', 'force_last_at_ms')
local count = 0
if m[1] == ARGV[1] then count = num(m[2]) end
local last = num(m[3])
local spacing = tonumber(ARGV[3])
if now_ms - last < spacing then
  return {'too_soon', spacing - (now_ms - last)}
end
if count >= tonumber(ARGV[2]) then
  return {'over', count}
end
redis.call('HSET', KEYS[1], 'force_day', ARGV[1], 'force_count', string.format('%d', count + 1),
  'force_last_at_ms', string.format('%d', now_ms))
return {'ok', count + 1}
