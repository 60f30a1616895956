-- Announce a service in the namespace registry: the script of docs/bus.md "Announcing:
-- the script", exactly as it is written there (tests/polls/test_node_units.py checks it).
-- KEYS[1] {registry}:owners  KEYS[2] {registry}:services  KEYS[3] {registry}:alive
-- ARGV[1] service  ARGV[2] msgpack announcement  ARGV[3] lease (ms)  ARGV[4..] namespaces
-- Returns the new lease expiry (ms), or the error OWNED when another service owns one of
-- the namespaces (then nothing is written).

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

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
