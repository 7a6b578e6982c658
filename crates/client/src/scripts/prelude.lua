-- prelude: helpers prepended to every wxtoken script (see keyspace::script).
-- num(v): a meta number as written by us — a whole number in [0, 2^53) —
-- or 0 for anything a foreign writer spoiled.
local function num(v)
  local n = tonumber(v)
  if n == nil or n ~= n or n < 0 or n >= 9007199254740992 then return 0 end
  return math.floor(n)
end
-- token_pttl(key): PTTL of a token key that holds a plausible token (the rule
-- of keyspace::is_plausible_token: 1-2048 printable ASCII), else -2 (none).
local function token_pttl(key)
  local v = redis.pcall('GET', key)
  if type(v) ~= 'string' or #v == 0 or #v > 2048 or string.find(v, '[^!-~]') then return -2 end
  return redis.call('PTTL', key)
end
