-- quota_take: count one upstream call against today's fleet budget (SPEC §3).
-- KEYS[1] quota counter of the quota day; ARGV[1] budget, ARGV[2] expiry ms
-- Returns {'ok', used} or {'over', used}; a refused call is not counted.
-- A counter a foreign writer spoiled (not a positive integer after INCR)
-- restarts the day's count rather than stopping every refresh.
local used = redis.pcall('INCR', KEYS[1])
if type(used) ~= 'number' or used < 1 then
  redis.call('DEL', KEYS[1])
  used = redis.call('INCR', KEYS[1])
end
if used == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if used > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return {'over', used - 1}
end
return {'ok', used}
