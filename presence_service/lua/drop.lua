-- drop: connection ARGV[5] closed; it leaves every channel it is in, in this partition.
--
-- KEYS[1]   the connection's record in the partition (P.."conn:"..ARGV[5])
-- ARGV[1-4] the prelude's (lib.lua)
-- ARGV[5]   connection id     ARGV[6]  gateway id     ARGV[7]  user
-- ARGV[8]   seq of this notification                   ARGV[9]  its stamp (ms, gateway clock)
-- ARGV[10]  "1" if the gateway closed it for a restart (1012), else "0"
-- ARGV[11]  restart grace (ms)                         ARGV[12] tombstone lifetime (s)
-- Returns {applied (0/1), joins, leaves}.
--
-- A plain drop is final at once: a leave for each channel where this was the user's last
-- connection. A restart drop keeps the user present for the grace instead, where this was
-- their last connection: those channels move to a lingering record, which a track by the
-- same user in the same channel absorbs, or which expire.lua releases (with the leave) once
-- the grace is over. Either way the record becomes a tombstone that refuses notifications of
-- this connection handled late (drop is the connection's last notification).
-- The connection's channels in other partitions are their partitions' drops' to release.
local key, conn, gw, user = KEYS[1], ARGV[5], ARGV[6], ARGV[7]
local ts, restart = tonumber(ARGV[9]), ARGV[10] == '1'
local grace, ttl = tonumber(ARGV[11]), tonumber(ARGV[12])

if not admit(key, conn, gw, user, ts) then
  return {0, 0, 0}
end
local lid = nil
for _, channel in ipairs(held_channels(key)) do
  local mine = tonumber(redis.call('HGET', P .. 'ch:' .. channel, user) or '0')
  if restart and mine == 1 then
    if lid == nil then
      lid = conn .. '@' .. ARGV[9]
      local expiry = NOW + grace
      redis.call('HSET', P .. 'linger:' .. lid, 'u', user)
      redis.call('SADD', P .. 'lu:' .. user, lid)
      redis.call('ZADD', P .. 'lingering', expiry, lid)
    end
    redis.call('HSET', P .. 'linger:' .. lid, 'c:' .. channel, 1)
  else
    remove_member(channel, user)
  end
end
bury(key, conn, gw, ARGV[9], ttl)
return {1, joins, leaves}
