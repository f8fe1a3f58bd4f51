-- pause / resume a priority: dispatchers skip paused streams when they claim. A resume wakes
-- as many blocked dispatchers as there are jobs waiting in the stream (up to SIGNAL_KEEP), each
-- through the priority's signal stream: the stream's own wake group was moved past those jobs by
-- claims made while it was paused, and a job enqueued meanwhile woke one dispatcher, which found
-- nothing.
-- KEYS[1] base
-- ARGV prio, paused (1|0), group
-- -> 1 when the state changed, 0 when it already was so
-- @include common

local base, prio, pause, group = KEYS[1], ARGV[1], ARGV[2] == '1', ARGV[3]
if not PRIORITY[prio] then return redis.error_reply('ERR unknown priority ' .. tostring(prio)) end
local changed
if pause then
  changed = redis.call('SADD', base .. 'paused', prio)
else
  changed = redis.call('SREM', base .. 'paused', prio)
  if changed == 1 then
    local key = stream_key(base, prio)
    local waiting = redis.call('XRANGE', key, undelivered_from(key, group), '+', 'COUNT', SIGNAL_KEEP)
    signal_workers(base, prio, #waiting, 'resume')
  end
end
return changed
