-- Page back through a room's history.
--
-- <p> is the prefix of the room's partition, chat:{chat.<n>}: (chat_service/keys.py), which
-- every key of the call starts with: one Redis Cluster slot.
--
-- KEYS[1]  <p>room:<room>     hash: private, ...
-- KEYS[2]  <p>members:<room>  set of members (private rooms)
-- KEYS[3]  <p>log:<room>      stream of messages
-- ARGV[1]  user
-- ARGV[2]  before: only messages older than this position; "" for the newest
-- ARGV[3]  limit: the most messages to give
--
-- Returns {status, more, entries}: status "ok", "not_found" or "forbidden"; more 1 when
-- older messages remain; entries newest first, as XREVRANGE gives them.

local user, before, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local refused = refusal(KEYS[1], KEYS[2], user)
if refused then
    return {refused, 0, {}}
end
local last = '+'
if before ~= '' then
    if before == '0-0' then
        return {'ok', 0, {}}
    end
    last = '(' .. before
end
local entries = redis.call('XREVRANGE', KEYS[3], last, '-', 'COUNT', limit + 1)
local more = 0
if #entries > limit then
    more = 1
    entries[#entries] = nil
end
return {'ok', more, entries}
