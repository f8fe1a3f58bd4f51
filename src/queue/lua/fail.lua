-- fail: the owner reports that an attempt failed. A retriable failure with attempts left goes
-- (attempts of this run < max) goes back to its stream (delay 0) or to the delayed set; otherwise
-- the job is dead-lettered with
-- the reason. A job whose cancel was requested ends 'cancelled' instead, whatever the error.
-- KEYS[1] base
-- ARGV group, id, attempt, error, retriable (1|0), delay_ms, dead_max, ttl_failed, ttl_cancelled
-- -> {'retry', due_ms} | {'dead'} | {'cancelled'} | {'stale'}
-- @include common

local base, group, id, attempt = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local err, retriable, delay = ARGV[4], ARGV[5] == '1', tonumber(ARGV[6])
local dead_max, ttl_failed, ttl_cancelled = ARGV[7], ARGV[8], ARGV[9]
local key = job_key(base, id)
local job = redis.call('HMGET', key, 'state', 'attempt', 'prio', 'entry', 'user', 'max', 'data', 'cancel', 'spent')
if job[2] == attempt and job[1] ~= 'running' then
  -- This attempt already ended (a resend after a dropped reply): repeat how, change nothing.
  if job[1] == 'failed' then return { 'dead' } end
  if job[1] == 'cancelled' then return { 'cancelled' } end
  if job[1] == 'delayed' then return { 'retry', tonumber(redis.call('HGET', key, 'due') or '0') } end
  if job[1] == 'queued' then return { 'retry', 0 } end
end
if job[1] ~= 'running' or job[2] ~= attempt then return { 'stale' } end

local prio, user, max, spent = job[3], job[5], tonumber(job[6] or '1'), tonumber(job[9] or '0')
local now = now_ms()
-- Read before the entry that holds it goes: a retry and a dead letter both carry it on.
local data = job[7] or job_data(base, id, prio, job[4])
ack_and_delete(base, prio, group, job[4])

if job[8] == '1' then
  finish(base, id, user, 'cancelled', now, ttl_cancelled, 'error', err)
  return { 'cancelled' }
end
if retriable and tonumber(attempt) - spent < max then
  if delay > 0 then
    redis.call('ZADD', delayed_key(base, prio), now + delay, id)
    redis.call('HSET', key, 'state', 'delayed', 'entry', '', 'owner', '', 'due', now + delay, 'error', err,
      'data', data)
  else
    requeue(base, id, prio, data, 'error', err)
  end
  count(base, now, 'retried:' .. prio, 1)
  return { 'retry', now + delay }
end
dead_letter(base, prio, dead_max, id, err, attempt, max, user, data, now)
finish(base, id, user, 'failed', now, ttl_failed, 'error', err)
count(base, now, 'failed:' .. prio, 1)
return { 'dead' }
