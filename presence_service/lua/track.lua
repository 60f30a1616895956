-- track: connection ARGV[5] is now subscribed to channel ARGV[10].
--
-- KEYS[1]   the connection's record in the channel's partition (P.."conn:"..ARGV[5])
-- ARGV[1-4] the prelude's (lib.lua)
-- ARGV[5]   connection id     ARGV[6]  gateway id     ARGV[7]  user
-- ARGV[8]   seq of this notification                   ARGV[9]  its stamp (ms, gateway clock)
-- ARGV[10]  channel
-- Returns {applied (0/1), joins, leaves}.
--
-- Applied only if newer (by seq) than the last notification applied for this connection and
-- channel. The user's first connection in the channel publishes a join. If the user has a
-- connection lingering in its restart grace in this channel, the new connection takes its
-- place: no join (the lingering one still counts), and the lingering one is released with
-- no leave (this one now counts).
local key, conn, gw, user = KEYS[1], ARGV[5], ARGV[6], ARGV[7]
local seq, ts, channel = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]

local field = 'c:' .. channel
local last = newer(key, conn, gw, user, ts, field, seq)
if last == nil then
  return {0, 0, 0}
end
redis.call('HSET', key, field, seq)
if last > 0 then
  return {1, 0, 0}
end
add_member(channel, user)

local lingering = P .. 'lu:' .. user
for _, lid in ipairs(redis.call('SMEMBERS', lingering)) do
  local record = P .. 'linger:' .. lid
  if redis.call('HDEL', record, field) == 1 then
    remove_member(channel, user)
    if #held_channels(record) == 0 then
      release_lingering(lid)
    end
    break
  end
end
return {1, joins, leaves}
