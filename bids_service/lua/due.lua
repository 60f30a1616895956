-- The open auctions whose end has passed, by Redis's clock (read-only).
--
-- KEYS[1]  bids:open   zset: open auctions scored by their end (ms)
-- ARGV[1]  most ids to return
--
-- Returns a list of auction ids, the longest overdue first.

return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
