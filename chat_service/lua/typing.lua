-- Tell a room that a user is typing: an event published, never stored, at most one per user
-- and room per window.
--
-- <p> is the prefix of the room's partition, chat:{chat.<n>}: (chat_service/keys.py), which
-- every key of the call starts with: one Redis Cluster slot.
--
-- KEYS[1]  <p>room:<room>           hash: private, ...
-- KEYS[2]  <p>members:<room>        set of members (private rooms)
-- KEYS[3]  <p>typing:<room>|<user>  exists while the user's window is open
-- ARGV[1]  user
-- ARGV[2]  the event's id
-- ARGV[3]  the client channel ("chat:<room>")
-- ARGV[4]  its events' pub/sub channel ("ch:{chat.<n>}:chat:<room>": the tag of <p>)
-- ARGV[5]  the window, in ms
--
-- Returns {"sent"}, {"dropped"} (within the window of the previous one), {"not_found"} or
-- {"forbidden"}.

local user = ARGV[1]
local refused = refusal(KEYS[1], KEYS[2], user)
if refused then
    return {refused}
end
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[5]) then
    return {'dropped'}
end
-- No position: typing is never stored.
redis.call(PUBLISH, ARGV[4],
    event_envelope(ARGV[2], now_ms(), ARGV[3], 'typing', nil, pack_map({'user', user})))
return {'sent'}
