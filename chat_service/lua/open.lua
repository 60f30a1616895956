-- Open a room for reading: authorize, give its position, and the messages a reader needs
-- (chat.join and the gateway's subscribe). Atomic, so that the position and the messages
-- agree with the events published before and after.
--
-- <p> is the prefix of the room's partition, chat:{chat.<n>}: (chat_service/keys.py), which
-- every key of the call starts with: one Redis Cluster slot.
--
-- KEYS[1]  <p>room:<room>         hash: private, creator, created, last, trimmed
-- KEYS[2]  <p>members:<room>      set of members (private rooms)
-- KEYS[3]  <p>log:<room>          stream of messages; entry ids are positions
-- KEYS[4]  <p>owned:<user>        set of the rooms here the user created (the quota)
-- KEYS[5]  <p>create-rate:<user>  hash: the user's room-creation bucket here
-- ARGV[1]  user
-- ARGV[2]  "1" to create a missing room as a public room (join), "0" to refuse (subscribe)
-- ARGV[3]  since: a position, or "" for none
-- ARGV[4]  latest: how many of the newest messages to give without since or when the
--          history does not reach back to since
-- ARGV[5]  replay limit: the most messages to give after since
-- ARGV[6]  the room
-- ARGV[7]  rooms a user may have created that still exist (the quota)
-- ARGV[8]  room creations per second the bucket refills
-- ARGV[9]  the bucket's size
-- ARGV[10] the prefix of room hashes (<p>room:)
-- ARGV[11] how long an empty public room lives, ms (a join of one starts it again)
--
-- Returns {status, private, position, recovered, entries, detail}: status "ok", "created",
-- "not_found", "forbidden", "too_many_rooms" (detail: the quota) or "rate_limited" (detail:
-- ms to wait) (nothing else then); private 1/0; position the newest message's id ("0-0" for
-- none); recovered "1"/"0" when since was given, else ""; entries the messages as XRANGE
-- gives them, oldest first.

local function newer(a, b)
    -- Whether stream id a > stream id b; ids are canonical "<ms>-<seq>" decimal strings.
    local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
    local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
    if ams ~= bms then
        if #ams ~= #bms then return #ams > #bms end
        return ams > bms
    end
    if #aseq ~= #bseq then return #aseq > #bseq end
    return aseq > bseq
end

local function latest(count)
    if count <= 0 then return {} end
    local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', count)
    local entries = {}
    for i = #newest, 1, -1 do
        entries[#entries + 1] = newest[i]
    end
    return entries
end

local user, since = ARGV[1], ARGV[3]
local count, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local status = 'ok'
local room = redis.call('HMGET', KEYS[1], 'private', 'last', 'trimmed', 'created')
if not room[1] then
    if ARGV[2] ~= '1' then
        return {'not_found', 0, '0-0', '', {}}
    end
    local now = now_ms()
    local refused = admit_room(KEYS[4], KEYS[5], user, ARGV[6], tonumber(ARGV[7]),
        tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10], now)
    if refused then
        return {refused[1], 0, '0-0', '', {}, refused[2]}
    end
    local created = new_room(KEYS[1], '0', user, now, ARGV[11])
    room = {'0', '0-0', '0-0', created}
    status = 'created'
elseif ARGV[2] == '1' and room[1] == '0' and room[2] == '0-0' then
    -- Joined while still empty: someone wants it, so it lives another empty_ttl.
    redis.call('PEXPIRE', KEYS[1], ARGV[11])
end
local private = 0
if room[1] == '1' then
    private = 1
    if excluded(room[1], KEYS[2], user) then
        return {'forbidden', 1, '0-0', '', {}}
    end
end
local position = room[2] or '0-0'
local trimmed = room[3] or '0-0'
-- A position older than the room itself comes from a history Redis lost (a restart without
-- persistence, then a new room of the same name): treat everything up to it as trimmed.
if room[4] and since ~= '' and since ~= '0-0' and newer(room[4] .. '-0', since) then
    trimmed = room[4] .. '-0'
end
if since == '' then
    return {status, private, position, '', latest(count)}
end
-- Every message after since is still here unless one was trimmed (trimmed > since), or
-- since is no position of this room's history (since > position: the history was lost).
-- Since "0-0" (a reader that joined an empty room) asks for the whole history.
if newer(trimmed, since) or newer(since, position) then
    return {status, private, position, '0', latest(count)}
end
if since == position then
    return {status, private, position, '1', {}}
end
local entries = redis.call('XRANGE', KEYS[3], '(' .. since, '+', 'COUNT', limit + 1)
if #entries > limit then
    return {status, private, position, '0', latest(count)}
end
return {status, private, position, '1', entries}
