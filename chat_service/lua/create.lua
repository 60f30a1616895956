-- Create a room, or confirm that its creator already created it (requests are retried).
--
-- <p> is the prefix of the room's partition, chat:{chat.<n>}: (chat_service/keys.py), which
-- every key of the call starts with: one Redis Cluster slot.
--
-- KEYS[1]  <p>room:<room>         hash: private ("0"/"1"), creator, created (ms), last, trimmed
-- KEYS[2]  <p>members:<room>      set of the members of a private room
-- KEYS[3]  <p>owned:<user>        set of the rooms here the user created (the quota)
-- KEYS[4]  <p>create-rate:<user>  hash: tokens, at (ms): the user's room-creation bucket here
-- ARGV[1]  user (the creator)
-- ARGV[2]  "1" for a private room, "0" for a public one
-- ARGV[3]  the room
-- ARGV[4]  rooms a user may have created that still exist (the quota)
-- ARGV[5]  room creations per second the bucket refills
-- ARGV[6]  the bucket's size
-- ARGV[7]  the prefix of room hashes (<p>room:)
-- ARGV[8]  how long an empty public room lives, ms
-- ARGV[9]  the most members a private room may have, the creator included
-- ARGV[10..] members to add (private rooms only; the creator is always one)
--
-- Returns {status, detail}: "created" or "exists" (same creator and privacy: the members
-- given are added) with the member count (0 for a public room); "conflict" (the room exists
-- otherwise), "too_many_members" (the members would be more than ARGV[9]: none is added)
-- with ARGV[9], or "too_many_rooms" / "rate_limited" from admit_room (nothing is created).

local user, private = ARGV[1], ARGV[2]
local max_members = tonumber(ARGV[9])
local room = redis.call('HMGET', KEYS[1], 'private', 'creator')
local status = 'created'
if room[1] then
    if room[1] ~= private or room[2] ~= user then
        return {'conflict', 0}
    end
    status = 'exists'
end
if private == '1' then
    -- Count who would be new before writing anything, so a refusal leaves the room as it was.
    local new, seen = 0, {}
    for i = 10, #ARGV do
        local member = ARGV[i]
        if member ~= user and not seen[member]
                and redis.call('SISMEMBER', KEYS[2], member) == 0 then
            new = new + 1
        end
        seen[member] = true
    end
    if redis.call('SCARD', KEYS[2]) + new + (status == 'created' and 1 or 0) > max_members then
        return {'too_many_members', max_members}
    end
end
if status == 'created' then
    local now = now_ms()
    local refused = admit_room(KEYS[3], KEYS[4], user, ARGV[3], tonumber(ARGV[4]),
        tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], now)
    if refused then
        return refused
    end
    new_room(KEYS[1], private, user, now, ARGV[8])
end
if private ~= '1' then
    return {status, 0}
end
redis.call('SADD', KEYS[2], user)
for i = 10, #ARGV do
    redis.call('SADD', KEYS[2], ARGV[i])
end
return {status, redis.call('SCARD', KEYS[2])}
