-- Tell a room that a user is typing: an event published, never stored, at most one per user
-- and room per window.
--
-- KEYS[1]  chat:room:<room>              hash: private, ...
-- KEYS[2]  chat:members:<room>           set of members (private rooms)
-- KEYS[3]  chat:typing:<room>|<user>     exists while the user's window is open
-- ARGV[1]  user
-- ARGV[2]  the event's id
-- ARGV[3]  the client channel ("chat:<room>")
-- ARGV[4]  the pub/sub channel of its events ("ch:chat:<room>")
-- ARGV[5]  the window, in ms
--
-- Returns {"sent"}, {"dropped"} (within the window of the previous one), {"not_found"} or
-- {"forbidden"}.

local user = ARGV[1]
local private = redis.call('HGET', KEYS[1], 'private')
if not private then
    return {'not_found'}
end
if private == '1' and redis.call('SISMEMBER', KEYS[2], user) == 0 then
    return {'forbidden'}
end
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[5]) then
    return {'dropped'}
end
local time = redis.call('TIME')
local event = {
    v = 1, kind = 'event', id = ARGV[2], ts = time[1] * 1000 + math.floor(time[2] / 1000),
    channel = ARGV[3], event = 'typing', data = {user = user},
}
redis.call('PUBLISH', ARGV[4], cmsgpack.pack(event))
return {'sent'}
