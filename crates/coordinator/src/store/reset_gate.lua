-- reset_gate: an operator lifts the fleet-wide back-off and today's quota
-- count, then asks for a refresh.
-- KEYS[1] meta, KEYS[2] quota counter of the current period, KEYS[3] events
-- ARGV[1] the event's slot field, ARGV[2] the period's key suffix
-- Returns the number of quota calls that were recorded today (0 when the
-- counter holds a foreign writer's junk, which is deleted like a count).
local used = num(redis.pcall('GET', KEYS[2]))
redis.call('DEL', KEYS[2])
-- WeChat still counts the calls forgotten here: the quota reconciliation
-- adds them back (quota_forgiven, for the period named by ARGV[2]).
local forgiven = 0
if redis.pcall('HGET', KEYS[1], 'quota_forgiven_day') == ARGV[2] then
  forgiven = num(redis.pcall('HGET', KEYS[1], 'quota_forgiven'))
end
redis.call('HSET', KEYS[1], 'failures', '0', 'next_attempt_at_ms', '0',
  'quota_forgiven_day', ARGV[2], 'quota_forgiven', tostring(forgiven + used))
redis.call('PUBLISH', KEYS[3], '{"event":"refresh_requested","reason":"operator_reset"' .. ARGV[1] .. '}')
return used
