-- release: a worker gives back a job it did not run to its end, and the attempt is not charged
-- to it (neither its run's attempt budget nor its poison count): it was not the job's fault.
-- - A worker that is shutting down gives back the jobs whose handlers it stopped (delay 0): they
--   go back to their stream at once instead of waiting out their lease.
-- - A job that could not start for want of something outside it (the task ledger unreachable)
--   is postponed (delay > 0): it waits in the delayed set, as a delayed retry does.
-- A job with a cancel pending is not given back ('cancel'): the caller reports a failure, which
-- ends it cancelled (or the reclaimer does). The same release again (a resend after a dropped
-- reply) answers 'ok' and changes nothing.
-- KEYS[1] base
-- ARGV group, consumer, id, attempt, delay_ms (absent = 0)
-- -> 'ok' | 'cancel' | 'stale'
-- @include common

local base, group, consumer, id, attempt = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local delay = tonumber(ARGV[5] or '0') or 0
local key = job_key(base, id)
local job = redis.call('HMGET', key, 'state', 'attempt', 'owner', 'prio', 'entry', 'cancel')
if job[2] == attempt and (job[1] == 'queued' or job[1] == 'delayed') and (job[3] or '') == '' then
  return 'ok'
end
if job[1] ~= 'running' or job[2] ~= attempt or job[3] ~= consumer then return 'stale' end
if job[6] == '1' then return 'cancel' end
local data = job_data(base, id, job[4], job[5])
ack_and_delete(base, job[4], group, job[5])
if delay > 0 then
  local due = now_ms() + delay
  redis.call('ZADD', delayed_key(base, job[4]), due, id)
  redis.call('HSET', key, 'state', 'delayed', 'entry', '', 'owner', '', 'due', due, 'data', data)
else
  requeue(base, id, job[4], data)
end
redis.call('HINCRBY', key, 'spent', 1)
return 'ok'
