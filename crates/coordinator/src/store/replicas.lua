-- A replica's presence: what config it runs, seen now (Redis TIME).
-- KEYS[1] replicas hash; ARGV: replica id, config generation, config digest,
-- forget entries unseen for this many ms. Junk of a foreign writer (another
-- type at the key, entries that are not ours) is dropped. Returns now in ms.
-- Only commands the coordinator's ACL user has (deploy/redis-acl.conf).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entry = cjson.encode({
  generation = tonumber(ARGV[2]), digest = ARGV[3], seen_at_ms = now })
local set = redis.pcall('HSET', KEYS[1], ARGV[1], entry)
if type(set) == 'table' and set.err then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], ARGV[1], entry)
end
local forget = tonumber(ARGV[4])
local cursor = '0'
repeat
  local page = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', 100)
  cursor = page[1]
  local kv = page[2]
  for i = 1, #kv, 2 do
    local ok, v = pcall(cjson.decode, kv[i + 1])
    if not ok or type(v) ~= 'table' or type(v.seen_at_ms) ~= 'number'
        or now - v.seen_at_ms > forget then
      redis.call('HDEL', KEYS[1], kv[i])
    end
  end
until cursor == '0'
return now
