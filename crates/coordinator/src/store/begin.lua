-- begin: run right after `SET lock owner NX PX ttl` succeeded (SPEC §3).
-- KEYS[1] lock, KEYS[2] epoch, KEYS[3] fence, KEYS[4] meta, KEYS[5] access_token
-- ARGV[1] owner, ARGV[2] candidate epoch (used only when none exists)
-- Returns {'lost'} when the lock no longer holds this owner, else
-- {'ok', epoch, fence, now_ms, token_pttl, generation, gate_ms, failures}:
-- gate_ms is how long the fleet-wide back-off still forbids upstream calls.
-- A foreign writer's junk is repaired here, by the lock holder, so it never
-- stops the fleet: an epoch that is not ours is replaced (like a data loss:
-- writers that began before are refused), a meta hash of the wrong type is
-- deleted, meta numbers that are not whole numbers in [0, 2^53) read as 0,
-- a token key without a plausible token reads as none (see peek.lua), and a
-- fence that cannot count or fell behind the stored generation restarts above
-- it and above every fence handed out before (those are below Redis' clock
-- in microseconds, which seeds every fence).
if redis.pcall('GET', KEYS[1]) ~= ARGV[1] then
  return {'lost'}
end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local epoch = redis.pcall('GET', KEYS[2])
if type(epoch) ~= 'string' or not string.find(epoch, '^%x+$') then
  -- A new dataset (first use, or Redis lost its data): seed the fence from
  -- the clock (microseconds) so generations keep rising across data loss and
  -- readers can always tell newer from older. Stays far below 2^53.
  epoch = ARGV[2]
  redis.call('SET', KEYS[2], epoch)
  redis.call('SET', KEYS[3], string.format('%d', now_us))
end
local m = redis.pcall('HMGET', KEYS[4], 'generation', 'next_attempt_at_ms', 'failures')
if m.err then
  redis.call('DEL', KEYS[4])
  m = {}
end
local gen = num(m[1])
local fence = redis.pcall('INCR', KEYS[3])
if type(fence) ~= 'number' or fence <= gen then
  fence = math.max(gen + 1, now_us)
  redis.call('SET', KEYS[3], string.format('%d', fence))
end
local gate = num(m[2]) - now_ms
if gate < 0 then gate = 0 end
return {'ok', epoch, fence, now_ms, token_pttl(KEYS[5]), gen, gate,
  math.min(num(m[3]), 1000000000)}
