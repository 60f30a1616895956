-- Helpers shared by the scripts: the store prepends this file to each script it loads.
-- No KEYS or ARGV of its own.
--
-- cmsgpack.pack of a table with string keys gives a msgpack map in one call (used for
-- verdicts), but in no set order, an empty table becomes an array and a table cannot hold
-- nil. Events go through pack_map instead: the gateway requires `data` to be a map,
-- `auction.closed` may carry nulls, and clients read the keys in the order written here.

-- Redis's clock in milliseconds: one clock for every instance of the service.
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
-- strings, integers, booleans, NIL, or {raw = <msgpack bytes>} spliced in as they are.
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

-- Appends one event to an auction's history (entry id <seq>-0, the envelope in field e, plus
-- any extra fields) and publishes the same envelope (common.envelope.Event.to_wire). `data`
-- is the event's data as a packed map (pack_map). The envelope id, <auction>/<seq>, names the
-- event uniquely, so a consumer may deduplicate by it.
local function emit(history, maxlen, pubsub, channel, auction, seq, now, event, data, extra)
  local position = int(seq)
  local envelope = pack_map({
    'v', 1, 'kind', 'event', 'id', auction .. '/' .. position, 'ts', now,
    'channel', channel, 'event', event, 'position', position, 'data', {raw = data},
  })
  local args = {'XADD', history}
  if maxlen > 0 then
    args[#args + 1] = 'MAXLEN'
    args[#args + 1] = '~'
    args[#args + 1] = maxlen
  end
  args[#args + 1] = position .. '-0'
  args[#args + 1] = 'e'
  args[#args + 1] = envelope
  for _, value in ipairs(extra or {}) do
    args[#args + 1] = value
  end
  redis.call(unpack(args))
  redis.call('PUBLISH', pubsub, envelope)
end

