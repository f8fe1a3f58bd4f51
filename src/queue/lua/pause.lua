-- pause / resume a priority: dispatchers skip paused streams when they claim. A resume writes to
-- the signal stream so dispatchers blocked in XREAD wake up and claim at once.
-- KEYS[1] base
-- ARGV prio, paused (1|0)
-- -> 1 when the state changed, 0 when it already was so
-- @include common

local base, prio, pause = KEYS[1], ARGV[1], ARGV[2] == '1'
if not PRIORITY[prio] then return redis.error_reply('ERR unknown priority ' .. tostring(prio)) end
local changed
if pause then
  changed = redis.call('SADD', base .. 'paused', prio)
else
  changed = redis.call('SREM', base .. 'paused', prio)
  redis.call('XADD', base .. 'signal', 'MAXLEN', 1, '*', 'resume', prio)
end
return changed
