-- Judge bids on auctions of one partition n in order and apply each accepted one: check (key
-- seen? bidder within their rate? open? high enough?), state update, history append and
-- publish, atomically, in commit order. Every key, and every channel it publishes to, is of
-- partition n (one hash tag {bids.<n>}): a read's bids come in one call per partition.
--
-- KEYS[1]          bids:{bids.<n>}:open          zset: the partition's open auctions by end (ms)
-- then for each bid i (1-based), four keys:
-- KEYS[4i-2]       bids:{bids.<n>}:auction:<id>  hash: the auction's state
-- KEYS[4i-1]       bids:{bids.<n>}:history:<id>  stream: the auction's events, entry id <seq>-0
-- KEYS[4i]         bids:{bids.<n>}:verdict:...   string: the verdict of (bidder, key)
-- KEYS[4i+1]       bids:{bids.<n>}:rate:<user>   string "<tokens> <at ms>": the bidder's
--                                                token bucket in the partition
-- ARGV[1]          how long to keep an accepted bid's verdict, ms
-- ARGV[2]          how long to keep a bid_too_low verdict, ms (other refusals are not kept)
-- ARGV[3]          history cap (XADD MAXLEN ~), 0 for none
-- ARGV[4]          prefix of client channel names ('auction:')
-- ARGV[5]          prefix of the partition's pub/sub channels of client channels
--                  ('ch:{bids.<n>}:')
-- ARGV[6]          bids per second a bidder's bucket refills
-- ARGV[7]          the bucket's size (burst)
-- then for each bid i, four arguments:
-- ARGV[4i+4]       auction id
-- ARGV[4i+5]       bidder (the authenticated user)
-- ARGV[4i+6]       idempotency key (kept beside the event in the history, for audits)
-- ARGV[4i+7]       amount (integer, minor units)
--
-- Returns {fresh_1, verdict_1, fresh_2, verdict_2, ...}: fresh is 1 for a new verdict, 0 for
-- the one stored by an earlier try of the same key; a verdict is a msgpack map {auction,
-- amount, ok, code?, seq?, ends_at?, extended?, minimum?, retry_after_ms?}.

local accepted_ttl, refusal_ttl = ARGV[1], ARGV[2]
local maxlen = tonumber(ARGV[3])
local rate, burst = tonumber(ARGV[6]), tonumber(ARGV[7])
-- One instant for the whole read: its bids are committed together.
local now = now_ms()
local result = {}

-- Token buckets of the bidders of this call, read once and written once at the end: a user's
-- bids in one read cost one GET and one SET between them, and no round trip of their own.
local buckets, bucket_keys = {}, {}

local function take_token(rate_key)
  local tokens = buckets[rate_key]
  if tokens == nil then
    tokens = burst
    local stored = redis.call('GET', rate_key)
    if stored then
      local left, at = string.match(stored, '^(%S+) (%S+)$')
      tokens = math.min(burst, tonumber(left) + math.max(0, now - tonumber(at)) * rate / 1000)
    end
    bucket_keys[#bucket_keys + 1] = rate_key
  end
  if tokens < 1 then
    buckets[rate_key] = tokens
    return math.ceil((1 - tokens) * 1000 / rate)
  end
  buckets[rate_key] = tokens - 1
  return nil
end

local function place(auction_key, history_key, verdict_key, rate_key, auction, bidder, key,
    amount)
  local stored = redis.call('GET', verdict_key)
  if stored then
    return 0, stored
  end
  -- After the stored verdict (a retry costs no token), before the auction (a bid on an
  -- auction that does not exist costs one).
  local wait = take_token(rate_key)
  if wait then
    return 1, cmsgpack.pack({auction = auction, amount = amount, ok = false,
      code = 'rate_limited', retry_after_ms = wait})
  end
  local f = redis.call('HMGET', auction_key, 'status', 'ends_at', 'current', 'starting_price',
    'increment', 'seq', 'extend_window', 'extend_by', 'bids')
  -- Verdicts are kept as verdict_ttl of the reference model (tests/bids/model.py) says: a
  -- missing or closed auction's refusal is not kept (judged again, it comes out the same), a
  -- too-low bid's for refusal_ttl.
  if not f[1] then
    return 1, cmsgpack.pack({auction = auction, amount = amount, ok = false,
      code = 'auction_not_found'})
  end
  if f[1] ~= 'open' or now >= tonumber(f[2]) then
    return 1, cmsgpack.pack({auction = auction, amount = amount, ok = false,
      code = 'auction_closed'})
  end
  local minimum
  if f[3] then
    minimum = tonumber(f[3]) + tonumber(f[5])
  else
    minimum = tonumber(f[4])
  end
  if amount < minimum then
    local verdict = cmsgpack.pack({auction = auction, amount = amount, ok = false,
      code = 'bid_too_low', minimum = minimum})
    redis.call('SET', verdict_key, verdict, 'PX', refusal_ttl)
    return 1, verdict
  end
  local seq = tonumber(f[6]) + 1
  local ends_at = tonumber(f[2])
  local window = tonumber(f[7])
  local new_end = ends_at
  -- anti-sniping (tests/bids/model.py extended_end)
  if window > 0 and ends_at - now <= window then
    new_end = math.max(ends_at, now + tonumber(f[8]))
  end
  local last = seq
  if new_end > ends_at then
    last = seq + 1
  end
  redis.call('HSET', auction_key, 'current', int(amount), 'bidder', bidder,
    'seq', int(last), 'ends_at', int(new_end), 'bids', int(tonumber(f[9] or 0) + 1))
  local channel = ARGV[4] .. auction
  local pubsub = ARGV[5] .. channel
  emit(history_key, maxlen, pubsub, channel, auction, seq, now, 'bid.placed',
    pack_map({'amount', amount, 'bidder', bidder, 'seq', seq, 'ends_at', new_end,
      'placed_at', now}),
    {'k', key})
  if last > seq then
    emit(history_key, maxlen, pubsub, channel, auction, last, now, 'auction.extended',
      pack_map({'ends_at', new_end}))
    redis.call('ZADD', KEYS[1], new_end, auction)
  end
  local verdict = cmsgpack.pack({auction = auction, amount = amount, ok = true, seq = seq,
    ends_at = new_end, extended = last > seq})
  redis.call('SET', verdict_key, verdict, 'PX', accepted_ttl)
  return 1, verdict
end

for i = 1, (#KEYS - 1) / 4 do
  local fresh, verdict = place(KEYS[4 * i - 2], KEYS[4 * i - 1], KEYS[4 * i], KEYS[4 * i + 1],
    ARGV[4 * i + 4], ARGV[4 * i + 5], ARGV[4 * i + 6], tonumber(ARGV[4 * i + 7]))
  result[#result + 1] = fresh
  result[#result + 1] = verdict
end
-- A bucket lives until it would be full again, so an idle bidder leaves nothing behind.
local refill_ms = math.ceil(burst * 1000 / rate) + 1000
for _, rate_key in ipairs(bucket_keys) do
  redis.call('SET', rate_key, tostring(buckets[rate_key]) .. ' ' .. int(now), 'PX', refill_ms)
end
return result
