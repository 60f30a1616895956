-- The coalesced tallies that are due: one poll.tally per poll, with the counts of now.
-- KEYS[1] poll:dirty (zset id -> when its tally is due)
-- ARGV[1] most polls per call  ARGV[2] history cap
-- Returns how many tallies were published.
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local published = 0
for _, id in ipairs(due) do
    redis.call('ZREM', KEYS[1], id)
    -- A closed poll's last counts went out with poll.closed; a vanished one has none.
    if redis.call('HGET', poll_key(id), 'closed') == '0' then
        publish_tally(id, now, ARGV[2])
        published = published + 1
    end
end
return published
