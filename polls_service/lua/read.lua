-- poll.get and subscribe: the poll's state and its channel's position, read together, and
-- with a since the events after it.
-- KEYS[1] poll:poll:<id>  KEYS[2] poll:counts:<id>  KEYS[3] poll:history:<id>
-- ARGV[1] id  ARGV[2] since ('' for none; a well-formed stream id)  ARGV[3] most events to replay
-- Returns nil when the poll does not exist, else msgpack {question, options, counts,
-- closes_at, closed, position, recovered, events = {{event, position, data}, ...}}.
local poll = redis.call('HMGET', KEYS[1], 'question', 'options', 'closes_at', 'closed', 'n')
if not poll[1] then return nil end
local now = now_ms()
local closes_at = tonumber(poll[3])
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local position = '0-0'
if #last > 0 then position = last[1][1] end

local function fields(entry)
    local map = {}
    for i = 1, #entry[2], 2 do map[entry[2][i]] = entry[2][i + 1] end
    return map
end

local state = {
    question = poll[1], options = cjson.decode(poll[2]), counts = read_counts(ARGV[1]),
    closes_at = closes_at, closed = poll[4] == '1' or now >= closes_at, position = position,
    recovered = false, events = {},
}
local since, limit = ARGV[2], tonumber(ARGV[3])
if since ~= '' then
    local after
    if since == '0-0' then
        after = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', limit + 1)
        -- Complete only if nothing was ever trimmed: the first entry is event 1.
        state.recovered = (#after == 0 and tonumber(poll[5]) == 0)
            or (#after > 0 and fields(after[1]).n == '1')
    else
        -- Complete when since is an entry still kept: trimming removes only the oldest.
        state.recovered = #redis.call('XRANGE', KEYS[3], since, since) == 1
        if state.recovered then
            after = redis.call('XRANGE', KEYS[3], '(' .. since, '+', 'COUNT', limit + 1)
        end
    end
    if state.recovered and #after > limit then state.recovered = false end
    if state.recovered then
        for i, entry in ipairs(after) do
            local map = fields(entry)
            state.events[i] = {event = map.event, position = entry[1], data = cmsgpack.unpack(map.data)}
        end
    end
end
return cmsgpack.pack(state)
