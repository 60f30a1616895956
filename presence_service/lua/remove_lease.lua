-- remove_lease: end a reaped gateway's lease, unless it was renewed (without lib.lua).
--
-- KEYS[1]   the gateway leases (gw:leases: gateway -> lease expiry, ms)
-- ARGV[1]   gateway id         ARGV[2]   the lease expiry read before its reaping began
-- Returns 1 if this call removed the lease, else 0 (renewed, or removed by another instance).
--
-- Called once every partition has released the gateway's connections. A gateway that
-- renewed its lease meanwhile (cut off from Redis for longer than its lease, then back)
-- keeps it; the lease left alone, or removed once, counts the gateway reaped once.
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if current and tonumber(current) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
