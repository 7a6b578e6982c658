-- quota: the daily-quota counter, shared by quota_take.lua and claim.lua
-- (prepended to them by store::script!).
-- take_quota(key, budget, ttl_ms): count one upstream call against the
-- day's fleet budget; returns 'ok', used or 'over', used (a refused call is
-- not counted). A counter a foreign writer spoiled (not a positive integer
-- after INCR) restarts the day's count rather than stopping every refresh.
local function take_quota(key, budget, ttl_ms)
  local used = redis.pcall('INCR', key)
  if type(used) ~= 'number' or used < 1 then
    redis.call('DEL', key)
    used = redis.call('INCR', key)
  end
  if used == 1 then redis.call('PEXPIRE', key, ttl_ms) end
  if used > tonumber(budget) then
    redis.call('DECR', key)
    return 'over', used - 1
  end
  return 'ok', used
end
