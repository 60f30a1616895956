-- expired_leases: the gateways whose lease has expired, by the Redis clock (without lib.lua).
--
-- KEYS[1]   the gateway leases (gw:leases: gateway -> lease expiry, ms, gateway clock)
-- ARGV[1]   most gateways to return
-- Returns {gateway1, expiry1, gateway2, expiry2, ...}, oldest expiry first.
--
-- A script rather than two commands so that the clock is the server's, read in the same
-- step (a gateway's lease is compared with the Redis clock, as the gateways set it).
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. int(now_ms()), 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[1]))
