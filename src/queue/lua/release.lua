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
local job, unreadable = load_job(base, id)
if job == false then return redis.error_reply('ERR task ' .. id .. ' cannot be read: ' .. unreadable) end
if not job then return 'stale' end
if job.attempt == attempt and (job.state == 'queued' or job.state == 'delayed') and job.owner == '' then
  return 'ok'
end
if job.state ~= 'running' or job.attempt ~= attempt or job.owner ~= consumer then return 'stale' end
if redis.call('HGET', key, 'cancel') == '1' then return 'cancel' end
local data = job_data(base, id, job.prio, job.entry)
ack_and_delete(base, job.prio, group, job.entry)
job.spent = string.format('%d', tonumber(job.spent) + 1)
if delay > 0 then
  local due = now_ms() + delay
  redis.call('ZADD', delayed_key(base, job.prio), due, id)
  add_to_hash(base, id, job, 'due', due, 'data', data)
  job.state, job.entry, job.owner = 'delayed', '', ''
  save_live(base, id, job)
else
  requeue(base, id, job, job.prio, data)
end
return 'ok'
