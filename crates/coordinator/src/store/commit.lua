-- commit: the fenced write of a fetched token (SPEC §3).
-- KEYS[1] access_token, KEYS[2] meta, KEYS[3] epoch, KEYS[4] events, KEYS[5] lock
-- ARGV[1] epoch, ARGV[2] fence, ARGV[3] token, ARGV[4] ttl_ms,
-- ARGV[5] fetched_by, ARGV[6] source, ARGV[7] lock owner, ARGV[8] now (unix ms
-- by Redis' clock: the grant's TIME plus the holder's monotonic time since)
-- Stores the token only if the epoch is unchanged (Redis did not lose its data
-- since begin) and the fence is newer than the stored generation.
-- Returns {'ok', generation, expires_at_ms} | {'epoch', 0, 0} | {'stale', generation, 0}
-- | {'expired', generation, 0}. Releases the lock if this owner still holds it.
-- Junk a foreign writer left (see begin.lua) reads as nothing: a generation
-- that is not a whole number in [0, 2^53) as 0, a meta hash of the wrong
-- type is replaced.
local function release()
  if redis.pcall('GET', KEYS[5]) == ARGV[7] then redis.call('DEL', KEYS[5]) end
end
if redis.pcall('GET', KEYS[3]) ~= ARGV[1] then
  release()
  return {'epoch', 0, 0}
end
local fence = tonumber(ARGV[2])
local stored = redis.pcall('HGET', KEYS[2], 'generation')
if type(stored) == 'table' then
  redis.call('DEL', KEYS[2])
  stored = false
end
local gen = num(stored)
if fence <= gen then
  release()
  return {'stale', gen, 0}
end
local ttl = tonumber(ARGV[4])
if (not ttl) or ttl <= 0 then
  release()
  return {'expired', gen, 0}
end
local now_ms = tonumber(ARGV[8]) or 0
local expires_at = now_ms + ttl
local fence_s = string.format('%d', fence)
local expires_s = string.format('%d', expires_at)
redis.call('SET', KEYS[1], ARGV[3], 'PX', ttl)
redis.call('HSET', KEYS[2],
  'generation', fence_s,
  'epoch', ARGV[1],
  'expires_at_ms', expires_s,
  'fetched_at_ms', string.format('%d', now_ms),
  'fetched_by', ARGV[5],
  'source', ARGV[6],
  'failures', '0',
  'next_attempt_at_ms', '0')
redis.call('PUBLISH', KEYS[4],
  '{"event":"refreshed","generation":' .. fence_s .. ',"expires_at_ms":' .. expires_s
  .. ',"ttl_ms":' .. string.format('%d', ttl)
  .. ',"fetched_by":' .. cjson.encode(ARGV[5]) .. '}')
release()
return {'ok', fence, expires_at}
