-- Create a room, or confirm that its creator already created it (requests are retried).
--
-- KEYS[1]  chat:room:<room>      hash: private ("0"/"1"), creator, created (ms), last, trimmed
-- KEYS[2]  chat:members:<room>   set of the members of a private room
-- ARGV[1]  user (the creator)
-- ARGV[2]  "1" for a private room, "0" for a public one
-- ARGV[3..] members to add (private rooms only; the creator is always one)
--
-- Returns {status, member_count}: status "created", "exists" (same creator and privacy: the
-- members given are added) or "conflict" (the room exists otherwise); member_count is 0 for a
-- public room.

local user, private = ARGV[1], ARGV[2]
local room = redis.call('HMGET', KEYS[1], 'private', 'creator')
local status = 'created'
if room[1] then
    if room[1] ~= private or room[2] ~= user then
        return {'conflict', 0}
    end
    status = 'exists'
else
    local now = redis.call('TIME')
    local created = string.format('%d', now[1] * 1000 + math.floor(now[2] / 1000))
    redis.call('HSET', KEYS[1], 'private', private, 'creator', user, 'created', created,
        'last', '0-0', 'trimmed', '0-0')
end
if private ~= '1' then
    return {status, 0}
end
redis.call('SADD', KEYS[2], user)
for i = 3, #ARGV do
    redis.call('SADD', KEYS[2], ARGV[i])
end
return {status, redis.call('SCARD', KEYS[2])}
