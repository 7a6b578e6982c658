-- invalidate(bad_token): report the stored token as rejected by WeChat
-- (SPEC §3, changed by invariant 7). Nothing is deleted here: a report only
-- asks the fleet to check the token with WeChat, because a token WeChat still
-- accepts is not invalid, and whoever can run this script must not be able
-- to empty the key or spend the fleet's upstream budget.
-- KEYS[1] access_token, KEYS[2] meta, KEYS[3] events channel, KEYS[4] report
-- (for a ticket: the ticket, its meta and report keys, and the id's channel)
-- ARGV[1] the token a WeChat API rejected; ARGV[2] (optional) the slot, e.g.
-- `ticket:jsapi` (absent or empty: the access token)
-- Returns one of
--   {'reported', generation}: the stored token is that token; a coordinator
--     checks it and publishes `invalidated` + `refreshed` (WeChat rejects it)
--     or `report_refused` (it does not). Reports of one generation are
--     deduplicated: only the first publishes `reported` (the report key
--     lives 60 s).
--   {'token_valid', generation}: the stored token is that token and a
--     coordinator found WeChat accepting it moments ago: keep using it.
--   {'already_replaced', generation}: another token (this generation, 0 if
--     none) is stored: read again.
-- Numbers a foreign writer spoiled (not whole numbers in [0, 2^53)) read as 0.
local current = redis.pcall('GET', KEYS[1])
if type(current) ~= 'string' or current ~= ARGV[1] then
  local gen = 0
  if type(current) == 'string' then gen = num(redis.pcall('HGET', KEYS[2], 'generation')) end
  return {'already_replaced', gen}
end
local m = redis.pcall('HMGET', KEYS[2], 'generation', 'verified_generation', 'verified_until_ms')
if m.err then m = {} end
local gen = num(m[1])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if num(m[2]) == gen and num(m[3]) > now_ms then
  return {'token_valid', gen}
end
local gen_s = string.format('%d', gen)
local slot = ''
if ARGV[2] and string.find(ARGV[2], '^ticket:[a-z_]+$') then
  slot = ',"slot":"' .. ARGV[2] .. '"'
end
if redis.pcall('GET', KEYS[4]) ~= gen_s then
  redis.call('SET', KEYS[4], gen_s, 'PX', 60000)
  redis.call('PUBLISH', KEYS[3], '{"event":"reported","generation":' .. gen_s .. slot .. '}')
end
return {'reported', gen}
