-- quota_reserve: reserve up to ARGV[3] units of a period's fleet budget at
-- once, for a replica to hand out without a command each (SPEC §9: a
-- component's per-minute authorizer calls).
-- KEYS[1] counter of the period, KEYS[2] (optional) the previous period's
-- counter, counted too (see quota.lua)
-- ARGV[1] budget, ARGV[2] expiry ms, ARGV[3] units wanted
-- Returns {granted, used}: granted 0 means the budget is spent.
local got, used = reserve_quota(KEYS[1], ARGV[1], ARGV[2], KEYS[2], tonumber(ARGV[3]))
return {got, used}
