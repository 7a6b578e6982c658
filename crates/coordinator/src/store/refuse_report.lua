-- refuse_report: a report of the stored token led to no refresh; record why
-- and tell the reporters (`report_refused`).
-- KEYS[1] meta, KEYS[2] events, KEYS[3] report
-- ARGV[1] reported generation, ARGV[2] reason ('token_valid', 'reserve'),
-- ARGV[3] ms the verification stands ('' when WeChat was not asked: then no
-- verification is recorded), ARGV[4] the event's slot field ('' or
-- ',"slot":"ticket:jsapi"')
-- Returns the count of refused reports. Only the lock holder runs this.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local refused = num(redis.call('HGET', KEYS[1], 'reports_refused')) + 1
redis.call('HSET', KEYS[1],
  'reports_refused', string.format('%d', refused),
  'last_refusal_reason', ARGV[2],
  'last_refusal_at_ms', string.format('%d', now_ms))
if ARGV[3] ~= '' then
  -- While the verification stands, invalidate.lua answers `token_valid`
  -- itself; once it lapses, the next report is a new one (and is announced).
  redis.call('HSET', KEYS[1],
    'verified_generation', ARGV[1],
    'verified_until_ms', string.format('%d', now_ms + tonumber(ARGV[3])))
  redis.call('DEL', KEYS[3])
end
redis.call('PUBLISH', KEYS[2], '{"event":"report_refused","generation":' .. ARGV[1]
  .. ',"reason":' .. cjson.encode(ARGV[2]) .. ARGV[4] .. '}')
return refused
