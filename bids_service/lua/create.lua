-- Create an auction unless one with this id exists (so concurrent seeding creates it once).
--
-- KEYS[1]  bids:{bids.<n>}:auction:<id>   hash: the auction's state (n: its partition)
-- KEYS[2]  bids:{bids.<n>}:open           zset: the partition's open auctions by end (ms)
-- ARGV[1]  auction id
-- ARGV[2]  title
-- ARGV[3]  starting price
-- ARGV[4]  increment
-- ARGV[5]  end, ms since the epoch, or '' to use ARGV[6]
-- ARGV[6]  duration from now, ms, or ''
-- ARGV[7]  anti-sniping window, ms
-- ARGV[8]  anti-sniping extension, ms
--
-- Returns {1, ends_at} when created, {0, 'exists'} or {0, 'ends_in_past'} when not.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, 'exists'}
end
local now = now_ms()
local ends_at
if ARGV[5] ~= '' then
  ends_at = tonumber(ARGV[5])
else
  ends_at = now + tonumber(ARGV[6])
end
if ends_at <= now then
  return {0, 'ends_in_past'}
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'title', ARGV[2], 'starting_price', ARGV[3],
  'increment', ARGV[4], 'ends_at', int(ends_at), 'extend_window', ARGV[7],
  'extend_by', ARGV[8], 'status', 'open', 'seq', 0, 'bids', 0, 'created_at', int(now))
redis.call('ZADD', KEYS[2], ends_at, ARGV[1])
return {1, ends_at}
