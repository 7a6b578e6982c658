-- A replica's presence: what config it runs, seen now (Redis TIME).
-- KEYS[1] replicas hash; ARGV: replica id, config generation, config digest,
-- forget entries unseen for this many ms. Entries that are not ours (junk of
-- a foreign writer) are dropped too. Returns now in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({
  generation = tonumber(ARGV[2]), digest = ARGV[3], seen_at_ms = now }))
local forget = tonumber(ARGV[4])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, v = pcall(cjson.decode, all[i + 1])
  if not ok or type(v) ~= 'table' or type(v.seen_at_ms) ~= 'number'
      or now - v.seen_at_ms > forget then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return now
