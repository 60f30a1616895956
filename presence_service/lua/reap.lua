-- reap: release what one dead gateway held in one partition (a batch of its connections
-- per call).
--
-- KEYS[1]   the gateway's connections in the partition (P.."gw:"..ARGV[5])
-- KEYS[2]   the partition's dead gateways (P.."dead": gateway -> its lease expiry)
-- ARGV[1-4] the prelude's (lib.lua)
-- ARGV[5]   gateway id                                 ARGV[6]  its lease expiry (ms), as read
-- ARGV[7]   connections to release in this call       ARGV[8]  tombstone lifetime (s)
-- ARGV[9]   how long a dead gateway is remembered (ms)
-- Returns {connections released, 1 if the partition is done with the gateway, leaves}.
--
-- The caller read the expired lease from gw:leases (another slot, out of this script's
-- reach), and removes it once every partition is done. Each connection popped here leaves
-- its channels (a leave where it was the user's last connection) and becomes a tombstone;
-- SPOP makes instances racing on one gateway release each connection exactly once. Once
-- none is left the gateway is remembered as dead, so that its notifications handled late
-- are refused (GT: an instance that read an older lease does not lower it).
local gw, expiry = ARGV[5], ARGV[6]
local batch, ttl, remember = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])

local popped = redis.call('SPOP', KEYS[1], batch)
for _, conn in ipairs(popped) do
  local key = P .. 'conn:' .. conn
  local user = redis.call('HGET', key, 'u')
  if user then
    for _, channel in ipairs(held_channels(key)) do
      remove_member(channel, user)
    end
  end
  redis.call('DEL', key)
  redis.call('HSET', key, 'dt', expiry)
  redis.call('EXPIRE', key, ttl)
end
local done = 0
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('ZADD', KEYS[2], 'GT', expiry, gw)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', NOW - remember)
  done = 1
end
return {#popped, done, leaves}
