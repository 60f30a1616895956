-- The open auctions of one partition whose end has passed, by Redis's clock (read-only).
--
-- KEYS[1]  bids:{bids.<n>}:open   zset: the partition's open auctions scored by their end (ms)
-- ARGV[1]  most ids to return
--
-- Returns {id, end, id, end, ...}, the longest overdue first (the ends let the caller merge
-- the partitions' lists).

return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[1]))
