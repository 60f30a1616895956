-- poll.create: a new poll, once per request id and per (user, key).
-- KEYS[1] poll:poll:<id>  KEYS[2] poll:counts:<id>  KEYS[3] poll:closing (zset id -> closes_at)
-- KEYS[4] poll:req:<request id>  KEYS[5] poll:created:<user key> (KEYS[4] again without a key)
-- ARGV[1] id  ARGV[2] question  ARGV[3] options (JSON array)  ARGV[4] closes_in (ms)
-- ARGV[5] retention after the close (ms)  ARGV[6] how long the outcome is kept (ms)
-- ARGV[7] creator
-- Returns the msgpack reply data (the first one's, for a repeat).
local stored = redis.call('GET', KEYS[4])
if not stored then stored = redis.call('GET', KEYS[5]) end
if stored then return stored end

local id = ARGV[1]
local now = now_ms()
local closes_at = now + tonumber(ARGV[4])
local expire_at = closes_at + tonumber(ARGV[5])
local options = cjson.decode(ARGV[3])
redis.call('HSET', KEYS[1], 'question', ARGV[2], 'options', ARGV[3], 'closes_at', closes_at,
    'expire_at', expire_at, 'closed', 0, 'tally_at', 0, 'n', 0, 'creator', ARGV[7],
    'created_at', now)
for _, option in ipairs(options) do redis.call('HSET', KEYS[2], option, 0) end
redis.call('PEXPIREAT', KEYS[1], expire_at)
redis.call('PEXPIREAT', KEYS[2], expire_at)
redis.call('ZADD', KEYS[3], closes_at, id)

local reply = cmsgpack.pack({
    poll = id, channel = 'poll:' .. id, question = ARGV[2], options = options,
    closes_at = closes_at, position = '0-0',
})
redis.call('SET', KEYS[4], reply, 'PX', ARGV[6])
redis.call('SET', KEYS[5], reply, 'PX', ARGV[6])
return reply
