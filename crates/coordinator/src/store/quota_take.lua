-- quota_take: count one upstream call against a period's fleet budget (SPEC §3).
-- KEYS[1] counter of the period, KEYS[2] (optional) the previous period's
-- counter, counted too (hourly limits: see quota.lua)
-- ARGV[1] budget, ARGV[2] expiry ms
-- Returns {'ok', used} or {'over', used} (see take_quota in quota.lua).
local verdict, used = take_quota(KEYS[1], ARGV[1], ARGV[2], KEYS[2])
return {verdict, used}
