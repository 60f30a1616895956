-- poll.vote: one vote per user, moved by a changed vote; once per (poll, user, key).
-- KEYS[1] poll:poll:<id>  KEYS[2] poll:counts:<id>  KEYS[3] poll:votes:<id>
-- KEYS[4] poll:key:<id>:<user key>  KEYS[5] poll:dirty (zset id -> when its tally is due)
-- ARGV[1] id  ARGV[2] user  ARGV[3] option  ARGV[4] how long the outcome is kept (ms)
-- ARGV[5] least time between two tallies (ms)  ARGV[6] history cap
-- Returns {'ok', <msgpack reply data>} or {'err', <code>}. Refusals are not kept: nothing
-- changed, so a repeat is refused the same way.
local stored = redis.call('GET', KEYS[4])
if stored then return {'ok', stored} end

local id, user, option = ARGV[1], ARGV[2], ARGV[3]
local poll = redis.call('HMGET', KEYS[1], 'options', 'closes_at', 'closed', 'tally_at', 'expire_at')
if not poll[1] then return {'err', 'poll_not_found'} end
local now = now_ms()
if poll[3] == '1' or now >= tonumber(poll[2]) then return {'err', 'poll_closed'} end
if redis.call('HEXISTS', KEYS[2], option) == 0 then return {'err', 'unknown_option'} end

local previous = redis.call('HGET', KEYS[3], user)
local changed = previous ~= option
if changed then
    if previous then redis.call('HINCRBY', KEYS[2], previous, -1) end
    redis.call('HINCRBY', KEYS[2], option, 1)
    redis.call('HSET', KEYS[3], user, option)
    redis.call('PEXPIREAT', KEYS[3], tonumber(poll[5]))
    -- Coalesce: publish now when the last tally is old enough, else let the flusher
    -- (flush.lua) publish one when it is due.
    local due = tonumber(poll[4]) + tonumber(ARGV[5])
    if now >= due then
        publish_tally(id, now, ARGV[6])
        redis.call('ZREM', KEYS[5], id)
    else
        redis.call('ZADD', KEYS[5], 'NX', due, id)
    end
end

local reply = {poll = id, option = option, changed = changed}
if previous then reply.previous = previous end
local packed = cmsgpack.pack(reply)
redis.call('SET', KEYS[4], packed, 'PX', ARGV[4])
return {'ok', packed}
