-- record_failure: remember an upstream failure and gate the whole fleet.
-- KEYS[1] meta
-- ARGV[1] code, ARGV[2] message, ARGV[3] class, ARGV[4] gate: 'rel:<ms>' (from
-- now, Redis TIME) or 'abs:<unix ms>' (e.g. the next quota day), ARGV[5]
-- 1 to count it as a consecutive failure (back-off exponent), 0 otherwise.
-- Returns {failures, next_attempt_at_ms}. A failure count a foreign writer
-- spoiled (not a whole number in [0, 2^53)) restarts from 0; it is capped at 10^9.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local kind, n = string.match(ARGV[4], '^(%a+):(%d+)$')
local next_at = now_ms
if kind == 'rel' then next_at = now_ms + tonumber(n) elseif kind == 'abs' then next_at = tonumber(n) end
local failures = math.min(num(redis.call('HGET', KEYS[1], 'failures')), 1000000000)
if ARGV[5] == '1' and failures < 1000000000 then failures = failures + 1 end
redis.call('HSET', KEYS[1],
  'last_error_code', ARGV[1],
  'last_error_msg', ARGV[2],
  'last_error_class', ARGV[3],
  'last_error_at_ms', string.format('%d', now_ms),
  'failures', string.format('%d', failures),
  'next_attempt_at_ms', string.format('%d', next_at))
return {failures, next_at}
