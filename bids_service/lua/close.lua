-- Close one auction if it is open and its end has passed: exactly once, whichever instance
-- runs it first; the others find it closed (or extended) and change nothing.
--
-- Every key, and the channel, is of the auction's partition n (one hash tag {bids.<n>}):
-- KEYS[1]  bids:{bids.<n>}:auction:<id>   hash: the auction's state
-- KEYS[2]  bids:{bids.<n>}:history:<id>   stream: the auction's events
-- KEYS[3]  bids:{bids.<n>}:open           zset: the partition's open auctions by end (ms)
-- ARGV[1]  auction id
-- ARGV[2]  pub/sub channel of the auction's events, ch:{bids.<n>}:auction:<id>
-- ARGV[3]  client channel name
-- ARGV[4]  history cap, 0 for none
--
-- Returns how many milliseconds after its end this call closed the auction (0 or more), else -1.

local auction = ARGV[1]
local f = redis.call('HMGET', KEYS[1], 'status', 'ends_at', 'current', 'bidder', 'seq')
if f[1] ~= 'open' then
  redis.call('ZREM', KEYS[3], auction)
  return -1
end
local now = now_ms()
if now < tonumber(f[2]) then
  -- Extended meanwhile: make sure the index holds the current end.
  redis.call('ZADD', KEYS[3], f[2], auction)
  return -1
end
local seq = tonumber(f[5]) + 1
local winner, amount = NIL, NIL
if f[3] then
  winner = f[4]
  amount = tonumber(f[3])
  redis.call('HSET', KEYS[1], 'winner', winner)
end
redis.call('HSET', KEYS[1], 'status', 'closed', 'seq', int(seq), 'closed_at', int(now))
emit(KEYS[2], tonumber(ARGV[4]), ARGV[2], ARGV[3], auction, seq, now, 'auction.closed',
  pack_map({'winner', winner, 'amount', amount}))
redis.call('ZREM', KEYS[3], auction)
return now - tonumber(f[2])
