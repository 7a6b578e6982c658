-- release: delete the lock only if it still holds this owner (SPEC §3).
-- KEYS[1] lock; ARGV[1] owner. Returns 1 if released, 0 otherwise.
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
