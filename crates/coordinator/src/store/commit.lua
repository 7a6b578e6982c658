-- commit: the fenced write of a fetched value (SPEC §3).
-- KEYS[1] value (access token or ticket), KEYS[2] meta, KEYS[3] epoch,
-- KEYS[4] events, KEYS[5] lock, KEYS[6] (optional) the refresh token
-- ARGV[1] epoch, ARGV[2] fence, ARGV[3] value, ARGV[4] ttl_ms,
-- ARGV[5] fetched_by, ARGV[6] source, ARGV[7] lock owner, ARGV[8] now (unix ms
-- by Redis' clock: the grant's TIME plus the holder's monotonic time since),
-- ARGV[9] life: 'reply' (ttl is the remaining life) or 'first_stored' (a
-- value already stored keeps its life: WeChat re-issues the same ticket, and
-- WeCom the same token, with a full expires_in), ARGV[10] the `slot` field
-- of the event ('' for the access token, else ',"slot":"ticket:jsapi"'),
-- ARGV[11] settle (ms, first_stored): how long after the counted expiry
-- WeChat's own may lie (the fetch's round trip and a margin; the life is
-- counted from when the request was sent). No upstream call for this value
-- until then (`settle_at_ms`, see claim.lua). ARGV[12] '1' when a report
-- triggered this refresh (starts the report spacing), ARGV[13] the sealed
-- refresh token that came with the value ('' or absent: none), stored in
-- KEYS[6] with the value or not at all (SPEC §9: never lost between the two),
-- ARGV[14] '1': announce a fill to spread (the event's `filled`),
-- ARGV[15] 'keep': the lock stays with its holder (a follower holds it for
-- as long as it follows, SPEC §12; its fence is the primary's generation)
-- Stores the value only if the epoch is unchanged (Redis did not lose its
-- data since claim) and the fence is newer than the stored generation.
-- Returns {'ok', generation, expires_at_ms} | {'epoch', 0, 0} |
-- {'stale', generation, 0} | {'expired', generation, 0} |
-- {'same', generation, expires_at_ms} (first_stored: that value is stored;
-- nothing changed but a pending force request, which this ends) |
-- {'early', generation, 0} (first_stored: WeChat handed out again the value
-- whose counted life ended, so it is about to die: not stored, and no call
-- for one settle time). Releases the lock if this owner still holds it.
-- Junk a foreign writer left (see claim.lua) reads as nothing: a generation
-- that is not a whole number in [0, 2^53) as 0, a meta hash of the wrong
-- type is replaced.
local function release()
  if ARGV[15] == 'keep' then return end
  if redis.pcall('GET', KEYS[5]) == ARGV[7] then redis.call('DEL', KEYS[5]) end
end
if redis.pcall('GET', KEYS[3]) ~= ARGV[1] then
  release()
  return {'epoch', 0, 0}
end
local fence = tonumber(ARGV[2])
local m = redis.pcall('HMGET', KEYS[2], 'generation', 'value_sha1', 'expires_at_ms', 'settle_at_ms')
if m.err then
  redis.call('DEL', KEYS[2])
  m = {}
end
local gen = num(m[1])
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
local sha = redis.sha1hex(ARGV[3])
if ARGV[9] == 'first_stored' then
  local current = redis.pcall('GET', KEYS[1])
  if current == ARGV[3] then
    -- WeChat hands out the stored value again: no other can be had now, so
    -- a force request for it is done with.
    redis.call('HDEL', KEYS[2], 'force_generation')
    release()
    return {'same', gen, num(m[3])}
  end
  if m[2] == sha then
    -- Handed out again after the life it was counted: WeChat's expiry is
    -- moments away. Serving it would hand out a dead value.
    redis.call('HSET', KEYS[2], 'settle_at_ms', string.format('%d', now_ms + tonumber(ARGV[11])))
    release()
    return {'early', gen, 0}
  end
end
local expires_at = now_ms + ttl
local fence_s = string.format('%d', fence)
local expires_s = string.format('%d', expires_at)
-- Absolute: the time this script waited to run is not added to the life.
redis.call('SET', KEYS[1], ARGV[3], 'PXAT', expires_at)
redis.call('HSET', KEYS[2],
  'generation', fence_s,
  'epoch', ARGV[1],
  'expires_at_ms', expires_s,
  'fetched_at_ms', string.format('%d', now_ms),
  'fetched_by', ARGV[5],
  'source', ARGV[6],
  'value_sha1', sha,
  'failures', '0',
  'next_attempt_at_ms', '0')
-- The new value ends the failure: status shows no error that is over (meta.rs).
redis.call('HDEL', KEYS[2], 'last_error_code', 'last_error_msg', 'last_error_class', 'last_error_at_ms')
if ARGV[9] == 'first_stored' then
  redis.call('HSET', KEYS[2], 'settle_at_ms', string.format('%d', expires_at + tonumber(ARGV[11])))
elseif m[4] then
  redis.call('HDEL', KEYS[2], 'settle_at_ms')
end
if KEYS[6] and ARGV[13] and ARGV[13] ~= '' then
  redis.call('SET', KEYS[6], ARGV[13])
end
if ARGV[12] == '1' then
  redis.call('HSET', KEYS[2], 'report_refresh_at_ms', string.format('%d', now_ms))
end
redis.call('PUBLISH', KEYS[4],
  '{"event":"refreshed","generation":' .. fence_s .. ',"expires_at_ms":' .. expires_s
  .. ',"ttl_ms":' .. string.format('%d', ttl)
  .. ',"fetched_by":' .. cjson.encode(ARGV[5]) .. ARGV[10]
  .. (ARGV[14] == '1' and ',"filled":true' or '') .. '}')
release()
return {'ok', fence, expires_at}
