-- The prelude of every service script: common/lua.py puts it first in each script it loads,
-- before the service's lua/lib.lua and the script itself. No KEYS or ARGV of its own.
--
-- Events are packed with pack_map, not with cmsgpack.pack of a table: that gives a msgpack
-- map in no set order, turns an empty table into an array and cannot hold nil, while the
-- gateway requires `data` to be a map, some events carry nulls, and clients read the keys
-- in the order written.

-- Redis's clock in whole milliseconds: one clock for every instance of every service.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An integer as a decimal string: tostring() of a Lua number switches to exponent notation
-- past 14 digits, which would corrupt amounts.
local function int(n)
  return string.format('%d', n)
end

-- Marks a nil value in pack_map.
local NIL = {}

-- A msgpack map from a flat list {k1, v1, k2, v2, ...} of at most 15 pairs. Values are
-- strings, numbers, booleans, NIL, or {raw = <msgpack bytes>} spliced in as they are.
local function pack_map(kv)
  local parts = {string.char(0x80 + #kv / 2)}
  for i = 1, #kv, 2 do
    parts[#parts + 1] = cmsgpack.pack(kv[i])
    local v = kv[i + 1]
    if v == NIL then
      parts[#parts + 1] = '\192'
    elseif type(v) == 'table' then
      parts[#parts + 1] = v.raw
    else
      parts[#parts + 1] = cmsgpack.pack(v)
    end
  end
  return table.concat(parts)
end

-- Event ids of one call, 32 hex digits like common.envelope.new_id's: the 24 of `nonce`
-- (random, one per call, an argument from Python) and an 8-digit count of the call's events.
-- Returns the function that gives the next id.
local function event_ids(nonce)
  local count = -1
  return function()
    count = count + 1
    return nonce .. string.format('%08x', count)
  end
end

-- The bus envelope of an event, packed: common.envelope.Event.to_wire, in its field order
-- (bus version 1, common.envelope.BUS_VERSION). `position` is a string, or nil on a channel
-- without history (the field is left out then, which readers take as nil); `data` is the
-- event's data packed with pack_map (a map, never an array).
local function event_envelope(id, ts, channel, event, position, data)
  local kv = {'v', 1, 'kind', 'event', 'id', id, 'ts', ts, 'channel', channel, 'event', event}
  if position ~= nil then
    kv[#kv + 1] = 'position'
    kv[#kv + 1] = position
  end
  kv[#kv + 1] = 'data'
  kv[#kv + 1] = {raw = data}
  return pack_map(kv)
end

-- The command that publishes an event: common/lua.py sets it for the Redis the scripts run
-- on (SPUBLISH on a Redis Cluster, where an event then costs one shard). Scripts publish
-- with redis.call(PUBLISH, channel, body), never naming the command themselves.
local PUBLISH = 'PUBLISH'
