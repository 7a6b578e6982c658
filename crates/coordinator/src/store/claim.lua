-- claim: one round trip from "due" to "allowed to call WeChat" (SPEC §3):
-- take the lock, begin (epoch, fence), check freshness and the gate, and take
-- one unit of the daily quota. Also run as plain `begin` by a holder that
-- took the lock with lock.lua (ARGV[3] empty).
-- KEYS[1] lock, KEYS[2] epoch, KEYS[3] fence, KEYS[4] meta, KEYS[5] access_token,
-- KEYS[6] quota counter of the period [ARGV[8], ARGV[9]) (unix ms, Redis
-- clock), KEYS[7] (optional, with ARGV[12] = '1') the previous period's
-- counter, counted too (claim only: plain begin passes five keys and ARGV[1..4])
-- ARGV[1] owner, ARGV[2] candidate epoch (used only when none exists),
-- ARGV[3] lock ttl ms ('' = the lock must already hold ARGV[1]),
-- ARGV[4] due-within ms ('' = report only: no freshness verdict, no quota),
-- ARGV[5] mode: 'due', 'force' (an operator's force request, honoured only
-- if the meta hash records one for the stored generation: a forged event
-- makes this a plain due check) or 'report' (ARGV[10] is the generation a
-- reader reported),
-- ARGV[6] daily budget, ARGV[7] quota key ttl ms, ARGV[10] reported generation,
-- ARGV[11] report_refresh_interval ms (the least time between two
-- report-triggered refreshes), ARGV[12] '1' when KEYS[7] is given
-- Returns {'locked', lock_pttl} when another attempt holds the lock,
-- {'lost'} when ARGV[3] is '' and the lock no longer holds this owner, else
-- {'ok', epoch, fence, now_ms, token_pttl, generation, gate_ms, failures,
--  verdict, used, forced}: forced is 1 when an operator's force request made
-- a fresh token due, else 0; verdict is 'none' (report only), 'fresh' (no refresh
-- needed), 'gated' (the back-off or a settle time forbids upstream calls), 'ok' (quota taken;
-- `used` is the day's count), 'over' (budget spent) or 'day' (KEYS[6] is not
-- the current period's counter by Redis' clock: the caller takes quota
-- itself), or
-- 'report' (the reported generation is the stored, fresh one: no quota is
-- taken; after `forced` the reply goes on with the token, 1 if a coordinator verified it
-- with WeChat and that still stands (0 otherwise), and the ms until a
-- report may trigger another refresh).
-- Only the freshness check reads the token's value (plausibility); a token
-- about to expire is due whatever it holds, so the common case costs PTTL.
-- A foreign writer's junk is repaired here, by the lock holder, so it never
-- stops the fleet: an epoch that is not ours is replaced (like a data loss:
-- writers that began before are refused), a meta hash of the wrong type is
-- deleted, meta numbers that are not whole numbers in [0, 2^53) read as 0,
-- a token key without a plausible token reads as none (see peek.lua), and a
-- fence that cannot count or fell behind the stored generation restarts above
-- it and above every fence handed out before (those are below Redis' clock
-- in microseconds, which seeds every fence).
if ARGV[3] == '' then
  if redis.pcall('GET', KEYS[1]) ~= ARGV[1] then
    return {'lost'}
  end
elseif not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then
  local held = redis.call('PTTL', KEYS[1])
  if held == -1 then
    -- A lock without expiry is a foreign writer's: it blocks one lock TTL at most.
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    held = tonumber(ARGV[3])
  end
  return {'locked', held}
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
local m = redis.pcall('HMGET', KEYS[4], 'generation', 'next_attempt_at_ms', 'failures',
  'force_generation', 'verified_generation', 'verified_until_ms', 'report_refresh_at_ms',
  'settle_at_ms')
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
local failures = math.min(num(m[3]), 1000000000)
if ARGV[4] == '' then
  return {'ok', epoch, fence, now_ms, token_pttl(KEYS[5]), gen, gate, failures, 'none', 0, 0}
end
local token = redis.call('PTTL', KEYS[5])
local fresh = token > tonumber(ARGV[4])
if fresh then
  token = token_pttl(KEYS[5])
  fresh = token > 0
end
local forced = 0
if fresh and ARGV[5] == 'force' and m[4] and num(m[4]) >= gen then
  -- A force request recorded for the stored generation (or a later one).
  fresh = false
  forced = 1
end
if fresh and ARGV[5] == 'report' and gen == num(ARGV[10]) then
  local verified = 0
  if num(m[5]) == gen and num(m[6]) > now_ms then verified = 1 end
  local spacing = num(m[7]) + tonumber(ARGV[11]) - now_ms
  if spacing < 0 then spacing = 0 end
  return {'ok', epoch, fence, now_ms, token, gen, gate, failures, 'report', 0, 0,
    redis.call('GET', KEYS[5]), verified, spacing}
end
if fresh then
  return {'ok', epoch, fence, now_ms, token, gen, gate, failures, 'fresh', 0, 0}
end
-- A value WeChat hands out again while valid (a ticket, a WeCom token)
-- cannot be replaced before WeChat's own expiry, which may lie up to one
-- fetch's round trip after the counted one: no call until it surely passed.
local settle = num(m[8]) - now_ms
if forced == 0 and settle > gate then gate = settle end
if gate > 0 then
  return {'ok', epoch, fence, now_ms, token, gen, gate, failures, 'gated', 0, forced}
end
if now_ms < tonumber(ARGV[8]) or now_ms >= tonumber(ARGV[9]) then
  return {'ok', epoch, fence, now_ms, token, gen, gate, failures, 'day', 0, forced}
end
local previous = nil
if ARGV[12] == '1' then previous = KEYS[7] end
local verdict, used = take_quota(KEYS[6], ARGV[6], ARGV[7], previous)
return {'ok', epoch, fence, now_ms, token, gen, gate, failures, verdict, used, forced}
