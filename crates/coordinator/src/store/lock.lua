-- try_lock: `SET lock owner NX PX ttl` (SPEC §3). Returns 1 when this owner
-- now holds the lock, else 0.
-- KEYS[1] lock; ARGV[1] owner, ARGV[2] ttl ms
-- Every lock the fleet takes expires. One that does not (a foreign writer's
-- key, of any type, or a PERSIST) is given the lock TTL, so it holds the
-- fleet up for one lock TTL instead of forever.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
