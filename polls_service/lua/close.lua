-- Close the polls whose time has come: poll.closed exactly once per poll, whichever of the
-- instances running this gets there first (the script is atomic; the ZREM and the closed
-- flag make a second run a no-op).
-- KEYS[1] poll:closing (zset id -> closes_at)  KEYS[2] poll:dirty
-- ARGV[1] most polls per call  ARGV[2] history cap
-- Returns the ids closed.
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local closed = {}
for _, id in ipairs(due) do
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    local poll = redis.call('HMGET', poll_key(id), 'closed', 'closes_at')
    if poll[1] == '0' then
        redis.call('HSET', poll_key(id), 'closed', 1, 'closed_at', now)
        append_and_publish(id, 'poll.closed',
            {poll = id, counts = read_counts(id), closes_at = tonumber(poll[2]), closed_at = now},
            now, ARGV[2])
        closed[#closed + 1] = id
    end
end
return closed
