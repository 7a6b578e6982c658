-- drop_token(bad_token): a coordinator learnt from WeChat that the stored
-- token is dead (a verified report, or an upstream call that answered
-- 40001/40014/42001): compare-and-delete it so readers wait for the refresh
-- instead of using it, and publish `invalidated`.
-- KEYS[1] access_token, KEYS[2] meta, KEYS[3] events
-- ARGV[1] the dead token, ARGV[2] '1' when a report triggered this (starts
-- the report spacing), else '0', ARGV[3] the event's slot field
-- Returns {'invalidated', generation} when the stored token was that token,
-- else {'already_replaced', generation} (0 when none is stored).
local current = redis.pcall('GET', KEYS[1])
local gen = num(redis.pcall('HGET', KEYS[2], 'generation'))
if type(current) == 'string' and current == ARGV[1] then
  redis.call('DEL', KEYS[1])
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[2], 'invalidated_sha1', redis.sha1hex(ARGV[1]),
    'invalidated_generation', string.format('%d', gen))
  -- WeChat rejected it: the next one may be fetched at once.
  redis.call('HDEL', KEYS[2], 'settle_at_ms')
  if ARGV[2] == '1' then
    redis.call('HSET', KEYS[2], 'report_refresh_at_ms', string.format('%d', now_ms))
  end
  redis.call('PUBLISH', KEYS[3],
    '{"event":"invalidated","generation":' .. string.format('%d', gen) .. ARGV[3] .. '}')
  return {'invalidated', gen}
end
if type(current) ~= 'string' then gen = 0 end
return {'already_replaced', gen}
