-- reap: release what one dead gateway held (a batch of its connections per call).
--
-- KEYS[1]   the gateway leases (gw:leases: gateway -> lease expiry, ms, gateway clock)
-- KEYS[2]   dead gateways (P.."dead": gateway -> its lease expiry when it was reaped)
-- ARGV[1-4] the prelude's (lib.lua)
-- ARGV[5]   connections to release in this call      ARGV[6]  tombstone lifetime (s)
-- ARGV[7]   how long a dead gateway is remembered (ms)
-- Returns {gateway or "", connections released, 1 if the gateway is done, leaves}.
--
-- The gateway with the oldest expired lease (if any) is the one reaped. Each of its
-- connections leaves its channels (a leave where it was the user's last connection) and
-- becomes a tombstone. Once none is left, the lease is removed and the gateway is
-- remembered as dead, so that its notifications handled late are refused. All in one
-- script, so that presence instances racing to reap one gateway release each connection
-- exactly once; a gateway that renews its lease between two calls is left alone.
local leases, dead = KEYS[1], KEYS[2]
local batch, ttl, remember = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])

local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', '(' .. NOW, 'WITHSCORES', 'LIMIT', 0, 1)
if #expired == 0 then
  return {'', 0, 0, 0}
end
local gw, expiry = expired[1], expired[2]
local connections = P .. 'gw:' .. gw
local popped = redis.call('SPOP', connections, batch)
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
if redis.call('SCARD', connections) == 0 then
  redis.call('ZREM', leases, gw)
  redis.call('ZADD', dead, expiry, gw)
  redis.call('ZREMRANGEBYSCORE', dead, '-inf', NOW - remember)
  done = 1
end
return {gw, #popped, done, leaves}
