-- Judge a read's bids in order and apply each accepted one: check (open? high enough? key
-- seen?), state update, history append and publish, atomically, in commit order.
--
-- KEYS[1]          bids:open           zset: open auctions scored by their end (ms)
-- then for each bid i (1-based), three keys:
-- KEYS[3i-1]       bids:auction:<id>   hash: the auction's state
-- KEYS[3i]         bids:history:<id>   stream: the auction's events, entry id <seq>-0
-- KEYS[3i+1]       bids:verdict:...    string: the verdict of (bidder, idempotency key)
-- ARGV[1]          how long to keep a verdict, ms
-- ARGV[2]          history cap (XADD MAXLEN ~), 0 for none
-- ARGV[3]          prefix of client channel names ('auction:')
-- ARGV[4]          prefix of pub/sub channels of client channels ('ch:')
-- then for each bid i, four arguments:
-- ARGV[4i+1]       auction id
-- ARGV[4i+2]       bidder (the authenticated user)
-- ARGV[4i+3]       idempotency key (kept beside the event in the history, for audits)
-- ARGV[4i+4]       amount (integer, minor units)
--
-- Returns {fresh_1, verdict_1, fresh_2, verdict_2, ...}: fresh is 1 for a new verdict, 0 for
-- the one stored by an earlier try of the same key; a verdict is a msgpack map {auction,
-- amount, ok, code?, seq?, ends_at?, extended?, minimum?}.

local ttl = ARGV[1]
local maxlen = tonumber(ARGV[2])
-- One instant for the whole read: its bids are committed together.
local now = now_ms()
local result = {}

local function place(auction_key, history_key, verdict_key, auction, bidder, key, amount)
  local stored = redis.call('GET', verdict_key)
  if stored then
    return 0, stored
  end
  local f = redis.call('HMGET', auction_key, 'status', 'ends_at', 'current', 'starting_price',
    'increment', 'seq', 'extend_window', 'extend_by', 'bids')
  local verdict
  if not f[1] then
    verdict = cmsgpack.pack({auction = auction, amount = amount, ok = false,
      code = 'auction_not_found'})
  elseif f[1] ~= 'open' or now >= tonumber(f[2]) then
    verdict = cmsgpack.pack({auction = auction, amount = amount, ok = false,
      code = 'auction_closed'})
  else
    local minimum
    if f[3] then
      minimum = tonumber(f[3]) + tonumber(f[5])
    else
      minimum = tonumber(f[4])
    end
    if amount < minimum then
      verdict = cmsgpack.pack({auction = auction, amount = amount, ok = false,
        code = 'bid_too_low', minimum = minimum})
    else
      local seq = tonumber(f[6]) + 1
      local ends_at = tonumber(f[2])
      local window = tonumber(f[7])
      local new_end = ends_at
      -- rules.extended_end
      if window > 0 and ends_at - now <= window then
        new_end = math.max(ends_at, now + tonumber(f[8]))
      end
      local last = seq
      if new_end > ends_at then
        last = seq + 1
      end
      redis.call('HSET', auction_key, 'current', int(amount), 'bidder', bidder,
        'seq', int(last), 'ends_at', int(new_end), 'bids', int(tonumber(f[9] or 0) + 1))
      local channel = ARGV[3] .. auction
      local pubsub = ARGV[4] .. channel
      emit(history_key, maxlen, pubsub, channel, auction, seq, now, 'bid.placed',
        pack_map({'amount', amount, 'bidder', bidder, 'seq', seq, 'ends_at', new_end,
          'placed_at', now}),
        {'k', key})
      if last > seq then
        emit(history_key, maxlen, pubsub, channel, auction, last, now, 'auction.extended',
          pack_map({'ends_at', new_end}))
        redis.call('ZADD', KEYS[1], new_end, auction)
      end
      verdict = cmsgpack.pack({auction = auction, amount = amount, ok = true, seq = seq,
        ends_at = new_end, extended = last > seq})
    end
  end
  redis.call('SET', verdict_key, verdict, 'PX', ttl)
  return 1, verdict
end

for i = 1, (#KEYS - 1) / 3 do
  local fresh, verdict = place(KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1],
    ARGV[4 * i + 1], ARGV[4 * i + 2], ARGV[4 * i + 3], tonumber(ARGV[4 * i + 4]))
  result[#result + 1] = fresh
  result[#result + 1] = verdict
end
return result
