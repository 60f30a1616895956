-- Announce a service: claim its namespaces, store its announcement, extend its lease.
-- docs/bus.md "Namespace registry" gives this script's exact semantics; it is the only
-- writer of the three keys.
--
-- KEYS[1]  {registry}:owners    hash: namespace -> service
-- KEYS[2]  {registry}:services  hash: service -> announcement (msgpack)
-- KEYS[3]  {registry}:alive     sorted set: service -> lease expiry (ms, Redis clock)
-- ARGV[1]  the service's name
-- ARGV[2]  its announcement (msgpack bytes)
-- ARGV[3]  the lease, in ms
-- ARGV[4...] the namespaces it owns (none or more)
--
-- Returns the new lease expiry (ms), or the error "OWNED namespace '<ns>' is owned by
-- '<other>'", having written nothing, when another service owns one of the namespaces.

local service = ARGV[1]
for i = 4, #ARGV do
  local owner = redis.call('HGET', KEYS[1], ARGV[i])
  if owner and owner ~= service then
    return redis.error_reply("OWNED namespace '" .. ARGV[i] .. "' is owned by '" .. owner .. "'")
  end
end
for i = 4, #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], service)
end
redis.call('HSET', KEYS[2], service, ARGV[2])
local expiry = now_ms() + tonumber(ARGV[3])
redis.call('ZADD', KEYS[3], 'GT', expiry, service)
return expiry
