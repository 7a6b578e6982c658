-- quota: the quota counter, shared by quota_take.lua, quota_reserve.lua and
-- claim.lua (prepended to them by store::script!).
-- reserve_quota(key, budget, ttl_ms, previous, want): count up to `want`
-- upstream calls against the period's fleet budget at once; returns how many
-- were granted (0: the budget is spent; refused units are not counted) and
-- the count. `previous` (or nil) is the previous period's counter: a limit
-- per hour (or minute) must hold for any 60 minutes (seconds), and any such
-- span lies within two clock periods, so both are counted together. A
-- counter a foreign writer spoiled (not a whole number after INCRBY)
-- restarts the period's count rather than stopping every refresh.
local function reserve_quota(key, budget, ttl_ms, previous, want)
  local used = redis.pcall('INCRBY', key, want)
  if type(used) ~= 'number' or used < want then
    redis.call('DEL', key)
    used = redis.call('INCRBY', key, want)
  end
  if used == want then redis.call('PEXPIRE', key, ttl_ms) end
  local before = 0
  if previous then before = num(redis.pcall('GET', previous)) end
  local over = used + before - tonumber(budget)
  if over > 0 then
    local back = math.min(over, want)
    redis.call('DECRBY', key, back)
    used = used - back
    want = want - back
  end
  return want, used + before
end
-- take_quota(key, budget, ttl_ms, previous): one unit; 'ok', used or
-- 'over', used.
local function take_quota(key, budget, ttl_ms, previous)
  local got, used = reserve_quota(key, budget, ttl_ms, previous, 1)
  if got == 0 then return 'over', used end
  return 'ok', used
end
