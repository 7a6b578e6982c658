-- begin: run right after `SET lock owner NX PX ttl` succeeded (SPEC §3).
-- KEYS[1] lock, KEYS[2] epoch, KEYS[3] fence, KEYS[4] meta, KEYS[5] access_token
-- ARGV[1] owner, ARGV[2] candidate epoch (used only when none exists)
-- Returns {'lost'} when the lock no longer holds this owner, else
-- {'ok', epoch, fence, now_ms, token_pttl, generation, gate_ms, failures}:
-- gate_ms is how long the fleet-wide back-off still forbids upstream calls.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {'lost'}
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX') then
  -- A new dataset (first use, or Redis lost its data): seed the fence from
  -- the clock (microseconds) so generations keep rising across data loss and
  -- readers can always tell newer from older. Stays far below 2^53.
  local t0 = redis.call('TIME')
  redis.call('SET', KEYS[3], string.format('%d', tonumber(t0[1]) * 1000000 + tonumber(t0[2])))
end
local epoch = redis.call('GET', KEYS[2])
local fence = redis.call('INCR', KEYS[3])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pttl = redis.call('PTTL', KEYS[5])
local m = redis.call('HMGET', KEYS[4], 'generation', 'next_attempt_at_ms', 'failures')
local gen = tonumber(m[1] or '0') or 0
local next_at = tonumber(m[2] or '0') or 0
local failures = tonumber(m[3] or '0') or 0
local gate = next_at - now_ms
if gate < 0 then gate = 0 end
return {'ok', epoch, fence, now_ms, pttl, gen, gate, failures}
