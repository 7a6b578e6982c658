-- lift_gate: a credential's definition changed (a new secret, say): the
-- back-off its old definition earned is lifted; the quota count stays.
-- KEYS[1] meta, KEYS[2] events; ARGV[1] the event's slot field.
-- Meta holding a foreign writer's junk is left to the lock holder to repair.
redis.pcall('HSET', KEYS[1], 'failures', '0', 'next_attempt_at_ms', '0')
redis.call('PUBLISH', KEYS[2], '{"event":"refresh_requested","reason":"config_changed"' .. ARGV[1] .. '}')
return 1
