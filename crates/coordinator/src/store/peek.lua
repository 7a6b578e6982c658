-- peek: what a refresher needs to decide when to act, in one round trip.
-- KEYS[1] access_token, KEYS[2] meta, KEYS[3] lock
-- Returns {token_pttl, generation, gate_ms, lock_pttl, failures}
-- (PTTL semantics: -2 = no key).
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = redis.call('HMGET', KEYS[2], 'generation', 'next_attempt_at_ms', 'failures')
local gate = (tonumber(m[2] or '0') or 0) - now_ms
if gate < 0 then gate = 0 end
return {redis.call('PTTL', KEYS[1]), tonumber(m[1] or '0') or 0, gate,
  redis.call('PTTL', KEYS[3]), tonumber(m[3] or '0') or 0}
