-- untrack: connection ARGV[5] unsubscribed from channel ARGV[10].
--
-- KEYS[1]   the connection's record in the channel's partition (P.."conn:"..ARGV[5])
-- ARGV[1-4] the prelude's (lib.lua)
-- ARGV[5]   connection id     ARGV[6]  gateway id     ARGV[7]  user
-- ARGV[8]   seq of this notification                   ARGV[9]  its stamp (ms, gateway clock)
-- ARGV[10]  channel
-- Returns {applied (0/1), joins, leaves}.
--
-- Applied only if newer (by seq) than the last notification applied for this connection and
-- channel; the seq is kept even when the connection was not in the channel, so that an older
-- track handled later is refused. The user's last connection out publishes a leave.
local key, conn, gw, user = KEYS[1], ARGV[5], ARGV[6], ARGV[7]
local seq, ts, channel = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]

local field = 'c:' .. channel
local last = newer(key, conn, gw, user, ts, field, seq)
if last == nil then
  return {0, 0, 0}
end
redis.call('HSET', key, field, -seq)
if last > 0 then
  remove_member(channel, user)
end
return {1, joins, leaves}
