-- force_request: an operator (`wxtoken refresh --force`, or the compatible
-- stable_token endpoint's force_refresh within WeChat's limits) asks the
-- fleet to replace the stored token even though it is fresh. Recorded in the
-- meta hash, which readers' ACL users cannot write, so only this request, not
-- a `refresh_requested` event anybody can publish, makes a replica refresh
-- a fresh token.
-- KEYS[1] meta, KEYS[2] events; ARGV[1] who asked (free text), ARGV[2] the
-- event's slot field
-- Returns {generation, requests so far, subscribers that heard it}.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = redis.pcall('HMGET', KEYS[1], 'generation', 'force_requests')
if m.err then
  redis.call('DEL', KEYS[1])
  m = {}
end
local gen = num(m[1])
local count = num(m[2]) + 1
redis.call('HSET', KEYS[1],
  'force_generation', string.format('%d', gen),
  'force_by', ARGV[1],
  'force_at_ms', string.format('%d', now_ms),
  'force_requests', string.format('%d', count))
local heard = redis.call('PUBLISH', KEYS[2], '{"event":"refresh_requested","generation":'
  .. string.format('%d', gen) .. ',"reason":"operator_force","force":true' .. ARGV[2] .. '}')
return {gen, count, heard}
