-- revoke: WeChat said an authorizer's refresh token is dead (61023, the
-- merchant revoked the authorization) or an `unauthorized` push came: drop
-- its token so no reader uses it, gate it for good (only a new
-- authorization lifts the gate) and tell the readers.
-- KEYS[1] value, KEYS[2] meta, KEYS[3] events (the refresh token is kept:
-- it is never deleted by the fleet, SPEC §9)
-- ARGV[1] the event's slot field, ARGV[2] now (unix ms)
-- Returns the generation invalidated (0 when none was stored).
local gen = num(redis.pcall('HGET', KEYS[2], 'generation'))
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], 'next_attempt_at_ms', '9999999999999',
  'last_error_code', '61023', 'last_error_class', 'fatal',
  'last_error_msg', 'the authorization was revoked', 'last_error_at_ms', ARGV[2])
redis.call('PUBLISH', KEYS[3],
  '{"event":"invalidated","generation":' .. string.format('%d', gen) .. ARGV[1] .. '}')
return gen
