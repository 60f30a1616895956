-- An auction's position and, for a subscribe with `since`, the events after it (read-only),
-- read together so that the position and the events agree.
--
-- KEYS[1]  bids:{bids.<n>}:auction:<id>   hash: the auction's state (n: its partition)
-- KEYS[2]  bids:{bids.<n>}:history:<id>   stream: the auction's events, entry id <seq>-0
-- ARGV[1]  since (a sequence number), or '' for none
-- ARGV[2]  most events to return
--
-- Returns false for an unknown auction; else {seq} when no replay is asked or possible
-- (nothing missed, or more missed than ARGV[2]), or {seq, envelope, envelope, ...} with every
-- stored event after since, oldest first (fewer than seq - since when history was trimmed).

local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then
  return false
end
local result = {seq}
if ARGV[1] == '' then
  return result
end
local since = tonumber(ARGV[1])
local missed = tonumber(seq) - since
if missed <= 0 or missed > tonumber(ARGV[2]) then
  return result
end
local entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+', 'COUNT', missed)
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'e' then
      result[#result + 1] = fields[i + 1]
    end
  end
end
return result
