-- peek: what a refresher needs to decide when to act, in one round trip.
-- KEYS[1] access_token, KEYS[2] meta, KEYS[3] lock, KEYS[4] report
-- Returns {token_pttl, generation, gate_ms, lock_pttl, failures, pending}
-- (PTTL semantics: -2 = no key). `pending` says what besides the token's age
-- asks for a refresh: 'force' (an operator's force request recorded for the
-- stored generation), 'report' (a reader reported the stored generation and
-- no verification of it stands), or '' (nothing).
-- A foreign writer's junk never stops the fleet: a token key that holds no
-- plausible token (wrong type, empty, > 2048 bytes, not printable ASCII)
-- reads as none, so it gets replaced; so does any token while the meta hash
-- has the wrong type (readers cannot read it; claim.lua repairs it); meta
-- numbers that are not whole numbers in [0, 2^53) read as 0.
-- `gate_ms` includes, once the value is gone, a first-stored value's settle
-- time (see commit.lua).
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = redis.pcall('HMGET', KEYS[2], 'generation', 'next_attempt_at_ms', 'failures',
  'force_generation', 'verified_generation', 'verified_until_ms', 'settle_at_ms')
local token = -2
if m.err then m = {} else token = token_pttl(KEYS[1]) end
local gen = num(m[1])
local gate = num(m[2]) - now_ms
if token <= 0 and num(m[7]) - now_ms > gate then gate = num(m[7]) - now_ms end
if gate < 0 then gate = 0 end
local pending = ''
if token > 0 then
  if m[4] and num(m[4]) >= gen then
    pending = 'force'
  elseif num(redis.pcall('GET', KEYS[4])) == gen and gen > 0
      and not (num(m[5]) == gen and num(m[6]) > now_ms) then
    pending = 'report'
  end
end
return {token, gen, gate, redis.call('PTTL', KEYS[3]), math.min(num(m[3]), 1000000000), pending}
