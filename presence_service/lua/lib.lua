-- The library of every presence script but the bare ones (list.lua, expired_leases.lua,
-- remove_lease.lua): the loader (common/lua.py) puts it after the common prelude in each, so
-- that the bookkeeping of a membership (and its join/leave event) is written once.
--
-- Presence state is split into partitions (docs/presence.md "Partitions"); a script call
-- works in one of them, whose keys all carry its hash tag, so that it touches one slot of
-- a Redis Cluster. A tracked channel C lives in the partition of C, with its presence events.
--
-- ARGV (common to every script; a script's own arguments start at ARGV[5]):
--   ARGV[1]  key prefix of the partition's state ("presence:{presence.<n>}:")
--   ARGV[2]  client-channel prefix of presence events ("presence:"): events of channel C go
--            to client channel ARGV[2]..C
--   ARGV[3]  pub/sub prefix of the partition's client channels ("ch:{presence.<n>}:")
--   ARGV[4]  24 hex digits, unique per call: event ids are this plus an 8-digit counter
-- KEYS[1] of every script is one of the partition's keys (a cluster client routes by it);
-- the others are derived here from the prefix, in the same slot.
--
-- Keys under the partition's prefix P:
--   P.."ch:"..C       hash  user -> connections of that user in channel C (lingering included)
--   P.."channels"     set   the partition's channels with anyone present
--   P.."users"        hash  user -> channels of the partition the user is present in
--   P.."conn:"..id    hash  one connection, as far as this partition knows it: u (user), g
--                     (gateway), "c:"..C -> seq of the last notification applied for C
--                     (positive: in C, negative: out of C); after its drop (or its gateway's
--                     reaping), a tombstone {dt = drop time} that expires
--   P.."gw:"..G       set   live connections of gateway G that this partition knows of
--   P.."dead"         zset  gateway -> lease expiry when it was reaped
--   P.."linger:"..L   hash  a connection in its restart grace: u (user), "c:"..C -> 1
--   P.."lu:"..user    set   the user's lingering ids L
--   P.."lingering"    zset  lingering id L -> grace expiry (ms, Redis clock)

local P = ARGV[1]
local EVENT_PREFIX = ARGV[2]
local PUBSUB_PREFIX = ARGV[3]
local next_id = event_ids(ARGV[4])

local NOW = now_ms()
local joins, leaves = 0, 0

local function publish(channel, event, user)
  -- No position: presence keeps no history.
  local body = event_envelope(next_id(), NOW, EVENT_PREFIX .. channel, event, nil,
    pack_map({'user', user}))
  redis.call(PUBLISH, PUBSUB_PREFIX .. EVENT_PREFIX .. channel, body)
end

-- One more connection of `user` in `channel`; the first one is a join.
local function add_member(channel, user)
  if redis.call('HINCRBY', P .. 'ch:' .. channel, user, 1) == 1 then
    redis.call('SADD', P .. 'channels', channel)
    redis.call('HINCRBY', P .. 'users', user, 1)
    joins = joins + 1
    publish(channel, 'join', user)
  end
end

-- One connection of `user` fewer in `channel`; the last one is a leave.
local function remove_member(channel, user)
  local key = P .. 'ch:' .. channel
  local left = redis.call('HINCRBY', key, user, -1)
  if left > 0 then
    return
  end
  redis.call('HDEL', key, user)
  if left < 0 then
    return -- was not counted: nothing to undo, nobody to tell
  end
  if redis.call('EXISTS', key) == 0 then
    redis.call('SREM', P .. 'channels', channel)
  end
  if redis.call('HINCRBY', P .. 'users', user, -1) <= 0 then
    redis.call('HDEL', P .. 'users', user)
  end
  leaves = leaves + 1
  publish(channel, 'leave', user)
end

-- The channels a connection or lingering record holds ("c:"..C fields with a value > 0).
local function held_channels(key)
  local fields = redis.call('HGETALL', key)
  local channels = {}
  for i = 1, #fields, 2 do
    local name = fields[i]
    if string.sub(name, 1, 2) == 'c:' and tonumber(fields[i + 1]) > 0 then
      channels[#channels + 1] = string.sub(name, 3)
    end
  end
  return channels
end

-- Whether a notification stamped `ts` (gateway clock, ms) by connection `conn` of gateway
-- `gw` may still be applied. A tombstone (the connection's drop, or its gateway's reaping)
-- refuses everything stamped no later than the drop; later notifications are of a new
-- connection reusing the id (a gateway restarted under the same id), which starts afresh.
local function admit(key, conn, gw, user, ts)
  local dead = redis.call('ZSCORE', P .. 'dead', gw)
  if dead and ts <= tonumber(dead) then
    return false
  end
  local record = redis.call('HMGET', key, 'u', 'dt')
  if record[2] then
    if ts <= tonumber(record[2]) then
      return false
    end
    redis.call('DEL', key)
    record[1] = false
  end
  if not record[1] then
    redis.call('HSET', key, 'u', user, 'g', gw)
    redis.call('SADD', P .. 'gw:' .. gw, conn)
  end
  return true
end

-- The ordering rule of track and untrack: a notification of (connection, channel) is applied
-- only if its `seq` is newer than the last one applied there. Returns that last seq (positive:
-- in the channel, negative: out of it, 0: never seen) when it is to be applied, else nil.
local function newer(key, conn, gw, user, ts, field, seq)
  if not admit(key, conn, gw, user, ts) then
    return nil
  end
  local last = tonumber(redis.call('HGET', key, field) or '0')
  if seq <= math.abs(last) then
    return nil
  end
  return last
end

-- Turn a connection's record into a tombstone stamped `dt`, kept `ttl` seconds.
local function bury(key, conn, gw, dt, ttl)
  redis.call('DEL', key)
  redis.call('HSET', key, 'dt', dt)
  redis.call('EXPIRE', key, ttl)
  redis.call('SREM', P .. 'gw:' .. gw, conn)
end

-- Forget one lingering record, with a leave for each channel it still holds.
local function release_lingering(lid)
  local key = P .. 'linger:' .. lid
  local user = redis.call('HGET', key, 'u')
  redis.call('ZREM', P .. 'lingering', lid)
  if not user then
    return
  end
  for _, channel in ipairs(held_channels(key)) do
    remove_member(channel, user)
  end
  redis.call('DEL', key)
  redis.call('SREM', P .. 'lu:' .. user, lid)
end

-- End of the prelude.
