-- Helpers shared by the chat scripts: the loader (common/lua.py) puts this file after the
-- common prelude (now_ms, int, NIL, pack_map, event_envelope) in each script.
-- No KEYS or ARGV of its own.

-- Whether `user` is kept out of a room whose hash says `private`: a private room admits its
-- members only.
local function excluded(private, members_key, user)
    return private == '1' and redis.call('SISMEMBER', members_key, user) == 0
end

-- Why `user` may not use the room, or nil when they may: 'not_found' (no such room) or
-- 'forbidden' (excluded).
local function refusal(room_key, members_key, user)
    local private = redis.call('HGET', room_key, 'private')
    if not private then
        return 'not_found'
    end
    if excluded(private, members_key, user) then
        return 'forbidden'
    end
    return nil
end

-- Take one token from a user's bucket (hash: tokens, at) that refills `rate` per second up to
-- `burst`, on the server's clock, so that it holds across instances. Returns nil when a token
-- was taken, else how many ms until one is there (nothing is written then).
local function take_token(key, rate, burst, now)
    local bucket = redis.call('HMGET', key, 'tokens', 'at')
    local tokens = tonumber(bucket[1]) or burst
    local at = tonumber(bucket[2]) or now
    tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
    if tokens < 1 then
        return math.ceil((1 - tokens) * 1000 / rate)
    end
    redis.call('HSET', key, 'tokens', tostring(tokens - 1), 'at', string.format('%.3f', now))
    -- Gone once it would be full again: an idle user leaves nothing behind.
    redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
    return nil
end

-- Whether `user` may create `room` now: under their quota of rooms that still exist, and
-- within their creation rate. On yes, the room is counted (SADD) and a token taken; returns
-- nil. On no, nothing is written; returns {status, detail}: {'too_many_rooms', quota} or
-- {'rate_limited', retry_after_ms}.
--
-- owned: set of the rooms of one partition the user created (<p>owned:<user>); rooms expire,
-- or are made again by someone else, without telling it, so at the quota it is pruned first
-- by looking at each room's hash (room_prefix .. name, room_prefix being <p>room:): keys not
-- declared in KEYS, but in the slot of those that are (every room named in the set is of
-- the partition, and <p> carries its hash tag), which a Redis Cluster allows. The set holds
-- at most `quota` names, so the look is bounded.
local function admit_room(owned, rate_key, user, room, quota, rate, burst, room_prefix, now)
    if redis.call('SCARD', owned) >= quota then
        for _, name in ipairs(redis.call('SMEMBERS', owned)) do
            if redis.call('HGET', room_prefix .. name, 'creator') ~= user then
                redis.call('SREM', owned, name)
            end
        end
        if redis.call('SCARD', owned) >= quota then
            return {'too_many_rooms', quota}
        end
    end
    local wait = take_token(rate_key, rate, burst, now)
    if wait then
        return {'rate_limited', wait}
    end
    redis.call('SADD', owned, room)
    return nil
end

-- A new room's hash. A public room starts empty, so it expires after empty_ttl ms unless a
-- message (send.lua) or a join (open.lua) comes first; a private room has members and stays.
local function new_room(key, private, user, now, empty_ttl)
    local created = int(now)
    redis.call('HSET', key, 'private', private, 'creator', user, 'created', created,
        'last', '0-0', 'trimmed', '0-0')
    if private ~= '1' then
        redis.call('PEXPIRE', key, empty_ttl)
    end
    return created
end

