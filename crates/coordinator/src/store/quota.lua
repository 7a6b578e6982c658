-- quota: the quota counter, shared by quota_take.lua and claim.lua
-- (prepended to them by store::script!).
-- take_quota(key, budget, ttl_ms, previous): count one upstream call against
-- the period's fleet budget; returns 'ok', used or 'over', used (a refused
-- call is not counted). `previous` (or nil) is the previous period's
-- counter: an hourly limit must hold for any 60 minutes, and any 60 minutes
-- lie within two clock hours, so both are counted together. A counter a
-- foreign writer spoiled (not a positive integer after INCR) restarts the
-- period's count rather than stopping every refresh.
local function take_quota(key, budget, ttl_ms, previous)
  local used = redis.pcall('INCR', key)
  if type(used) ~= 'number' or used < 1 then
    redis.call('DEL', key)
    used = redis.call('INCR', key)
  end
  if used == 1 then redis.call('PEXPIRE', key, ttl_ms) end
  local before = 0
  if previous then before = num(redis.pcall('GET', previous)) end
  if used + before > tonumber(budget) then
    redis.call('DECR', key)
    return 'over', used - 1 + before
  end
  return 'ok', used + before
end
