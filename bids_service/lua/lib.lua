-- Helpers shared by the bids scripts: the loader (common/lua.py) puts this file after the
-- common prelude (now_ms, int, NIL, pack_map, event_ids, event_envelope) in each script.
-- No KEYS or ARGV of its own.

-- Appends one event to an auction's history (entry id <seq>-0, the envelope in field e, plus
-- any extra fields) and publishes the same envelope. `data` is the event's data as a packed
-- map (pack_map). The envelope id, <auction>/<seq>, names the event uniquely, so a consumer
-- may deduplicate by it.
local function emit(history, maxlen, pubsub, channel, auction, seq, now, event, data, extra)
  local position = int(seq)
  local envelope = event_envelope(auction .. '/' .. position, now, channel, event, position,
    data)
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
  redis.call(PUBLISH, pubsub, envelope)
end
