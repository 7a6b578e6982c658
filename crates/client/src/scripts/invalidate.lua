-- invalidate(bad_token): compare-and-delete of the stored token (SPEC §3).
-- KEYS[1] access_token, KEYS[2] meta, KEYS[3] events channel
-- ARGV[1] the token a WeChat API rejected
-- Returns {'invalidated', generation} when the stored token was that token
-- (deleted, `invalidated` published), else {'already_replaced', generation}
-- where generation is the stored token's (0 when none is stored).
-- A generation a foreign writer spoiled (not a whole number in [0, 2^53)) reads as 0.
local current = redis.call('GET', KEYS[1])
local gen = num(redis.call('HGET', KEYS[2], 'generation'))
if current and current == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'invalidated_sha1', redis.sha1hex(ARGV[1]),
    'invalidated_generation', string.format('%d', gen))
  redis.call('PUBLISH', KEYS[3],
    '{"event":"invalidated","generation":' .. string.format('%d', gen) .. '}')
  return {'invalidated', gen}
end
if not current then gen = 0 end
return {'already_replaced', gen}
