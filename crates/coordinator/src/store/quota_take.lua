-- quota_take: count one upstream call against today's fleet budget (SPEC §3).
-- KEYS[1] quota counter of the quota day; ARGV[1] budget, ARGV[2] expiry ms
-- Returns {'ok', used} or {'over', used} (see take_quota in quota.lua).
local verdict, used = take_quota(KEYS[1], ARGV[1], ARGV[2])
return {verdict, used}
