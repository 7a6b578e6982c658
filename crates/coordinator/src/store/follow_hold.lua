-- follow_hold: the lock a replica holds for as long as it follows a
-- credential from another fleet (SPEC §12). Takes the lock when free, or
-- extends it when this owner holds it.
-- KEYS[1] lock; ARGV[1] owner, ARGV[2] ttl ms
-- Returns 2 when this owner held it (extended), 1 when it took it now, 0
-- when another holds it. A lock without expiry (a foreign writer's) is
-- given the TTL, as lock.lua does.
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 2
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
