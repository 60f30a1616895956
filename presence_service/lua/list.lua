-- list: the users present in one channel, with their connection counts (without lib.lua).
--
-- KEYS[1]   the channel's members (P.."ch:"..channel: user -> connections)
-- ARGV[1]   the asking user if they must be present themselves to ask, else ""
-- ARGV[2]   most users to return (0: only the count)
-- Returns {0} if the asker may not see, else {1, count, truncated (0/1), user1, n1, ...}.
--
-- A channel with more users than ARGV[2] answers a part of them, found with HSCAN so that
-- the work stays bounded however large the channel.
local key, asker, limit = KEYS[1], ARGV[1], tonumber(ARGV[2])

if asker ~= '' and redis.call('HEXISTS', key, asker) == 0 then
  return {0}
end
local count = redis.call('HLEN', key)
local out = {1, count, 0}
if limit == 0 or count == 0 then
  return out
end
if count <= limit then
  for _, item in ipairs(redis.call('HGETALL', key)) do
    out[#out + 1] = item
  end
  return out
end
out[3] = 1
local cursor, taken = '0', 0
for _ = 1, limit do -- at most `limit` rounds of HSCAN
  local page = redis.call('HSCAN', key, cursor, 'COUNT', 100)
  cursor = page[1]
  local items = page[2]
  for i = 1, #items, 2 do
    if taken < limit then
      out[#out + 1] = items[i]
      out[#out + 1] = items[i + 1]
      taken = taken + 1
    end
  end
  if cursor == '0' or taken >= limit then
    break
  end
end
return out
