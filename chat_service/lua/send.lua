-- Post a message: de-duplicate, authorize, rate-limit, append to the room's history and
-- publish the event, atomically, so that the order of events is the order of the history.
--
-- <p> is the prefix of the room's partition, chat:{chat.<n>}: (chat_service/keys.py), which
-- every key of the call starts with: one Redis Cluster slot.
--
-- KEYS[1]  <p>room:<room>                     hash: private, creator, created, last, trimmed
-- KEYS[2]  <p>members:<room>                  set of members (private rooms)
-- KEYS[3]  <p>log:<room>                      stream of messages (capped at the retention)
-- KEYS[4]  <p>sent:<room>|<user>|<client_id>  "<id> <position>" of a posted message
-- KEYS[5]  <p>rate:<user>                     hash: tokens, at (ms): the user's send bucket here
-- ARGV[1]  user
-- ARGV[2]  text
-- ARGV[3]  client_id
-- ARGV[4]  the new message's id
-- ARGV[5]  the client channel ("chat:<room>")
-- ARGV[6]  its events' pub/sub channel ("ch:{chat.<n>}:chat:<room>": the tag of <p>)
-- ARGV[7]  retention: messages kept in the room's history
-- ARGV[8]  how long a client_id is remembered, in ms
-- ARGV[9]  sends per second a user's bucket refills
-- ARGV[10] the bucket's size (burst)
--
-- Returns {"posted", id, position}, {"duplicate", id, position} (this client_id was posted:
-- nothing is done), {"not_found"}, {"forbidden"} or {"rate_limited", retry_after_ms}.

local user, text, client_id, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local retention, ttl = tonumber(ARGV[7]), tonumber(ARGV[8])
local rate, burst = tonumber(ARGV[9]), tonumber(ARGV[10])

local done = redis.call('GET', KEYS[4])
if done then
    local first_id, first_position = string.match(done, '^(%S+) (%S+)$')
    return {'duplicate', first_id, first_position}
end
local refused = refusal(KEYS[1], KEYS[2], user)
if refused then
    return {refused}
end

-- The user's send rate, across the rooms of this partition and instances (lib.lua).
local wait = take_token(KEYS[5], rate, burst, now_ms())
if wait then
    return {'rate_limited', wait}
end

-- Remember the newest position this append trims, so that a reader can tell whether the
-- history still reaches back to its position (XINFO's max-deleted-entry-id ignores trims).
local excess = redis.call('XLEN', KEYS[3]) + 1 - retention
if excess > 0 then
    local gone = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', excess)
    if #gone > 0 then
        redis.call('HSET', KEYS[1], 'trimmed', gone[#gone][1])
    end
end
local position = redis.call('XADD', KEYS[3], 'MAXLEN', retention, '*',
    'id', id, 'user', user, 'text', text, 'client_id', client_id)
redis.call('HSET', KEYS[1], 'last', position)
-- A room with a message is no longer empty: it stays (lib.lua new_room).
redis.call('PERSIST', KEYS[1])
redis.call('SET', KEYS[4], id .. ' ' .. position, 'PX', ttl)

local ts = tonumber(string.match(position, '^(%d+)-'))
-- The message's id is the event's id too; its data is what chat.history gives of it.
local data = pack_map({'id', id, 'user', user, 'text', text, 'ts', ts, 'client_id', client_id})
redis.call(PUBLISH, ARGV[6], event_envelope(id, ts, ARGV[5], 'message', position, data))
return {'posted', id, position}
