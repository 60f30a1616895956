-- expire: release lingering connections whose restart grace is over (a batch per call).
--
-- KEYS[1]   the partition's lingering connections (P.."lingering": id -> grace expiry, ms)
-- ARGV[1-4] the prelude's (lib.lua)
-- ARGV[5]   lingering records to release in this call
-- Returns {records released, leaves}.
--
-- Each released record leaves the channels it still holds: a leave where it was the user's
-- last connection (a user who came back meanwhile has another). Removing the record from
-- KEYS[1] in the same script makes the leave happen once, however many instances sweep.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[5]))
for _, lid in ipairs(due) do
  release_lingering(lid)
end
return {#due, leaves}
