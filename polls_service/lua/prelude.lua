-- Put before every script of this folder by src/lua.js: the helpers the scripts share.
-- Redis names: poll:poll:<id> (hash), poll:counts:<id> (hash option -> votes),
-- poll:votes:<id> (hash user -> option), poll:history:<id> (stream of the channel's events).

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function poll_key(id) return 'poll:poll:' .. id end
local function counts_key(id) return 'poll:counts:' .. id end
local function votes_key(id) return 'poll:votes:' .. id end
local function history_key(id) return 'poll:history:' .. id end

-- The counts as a Lua table option -> integer (packs as a map: a poll has >= 2 options).
local function read_counts(id)
    local flat = redis.call('HGETALL', counts_key(id))
    local counts = {}
    for i = 1, #flat, 2 do counts[flat[i]] = tonumber(flat[i + 1]) end
    return counts
end

-- Append an event of poll:<id> to its history and publish it, in this one atomic step
-- (docs/bus.md "Events and positions", rule 2). The history entry keeps the event's number
-- n (1, 2, ...): a replay is complete when it starts right after a known entry.
local function append_and_publish(id, event, data, now, maxlen)
    local n = redis.call('HINCRBY', poll_key(id), 'n', 1)
    local packed = cmsgpack.pack(data)
    local position = redis.call('XADD', history_key(id), 'MAXLEN', '~', maxlen, '*',
        'event', event, 'data', packed, 'n', n)
    -- The history goes with the poll, even if no instance ever closes it.
    redis.call('PEXPIREAT', history_key(id), tonumber(redis.call('HGET', poll_key(id), 'expire_at')))
    local channel = 'poll:' .. id
    redis.call('PUBLISH', 'ch:' .. channel, cmsgpack.pack({
        v = 1, kind = 'event', id = id .. '/' .. n, ts = now,
        channel = channel, event = event, position = position, data = data,
    }))
    return position
end

local function publish_tally(id, now, maxlen)
    redis.call('HSET', poll_key(id), 'tally_at', now)
    return append_and_publish(id, 'poll.tally', {poll = id, counts = read_counts(id)}, now, maxlen)
end
