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
local job, unreadable = load_job(base, id)
if job == false then return redis.error_reply('ERR task ' .. id .. ' cannot be read: ' .. unreadable) end
if job and job.attempt == attempt and job.state ~= 'running' then
  -- This attempt already ended (a resend after a dropped reply): repeat how, change nothing.
  if job.state == 'failed' then return { 'dead' } end
  if job.state == 'cancelled' then return { 'cancelled' } end
  if job.state == 'delayed' then return { 'retry', tonumber(redis.call('HGET', key, 'due') or '0') } end
  if job.state == 'queued' then return { 'retry', 0 } end
end
if not job or job.state ~= 'running' or job.attempt ~= attempt then return { 'stale' } end

local prio, user, max, spent = job.prio, job.user, tonumber(job.max), tonumber(job.spent)
local own = redis.call('HMGET', key, 'data', 'cancel')
local now = now_ms()
-- Read before the entry that holds it goes: a retry and a dead letter both carry it on.
local data = own[1] or job_data(base, id, prio, job.entry)
ack_and_delete(base, prio, group, job.entry)

if own[2] == '1' then
  finish(base, id, job, 'cancelled', now, ttl_cancelled, 'error', err)
  return { 'cancelled' }
end
if retriable and tonumber(attempt) - spent < max then
  if delay > 0 then
    redis.call('ZADD', delayed_key(base, prio), now + delay, id)
    add_to_hash(base, id, job, 'due', now + delay, 'error', err, 'data', data)
    job.state, job.entry, job.owner = 'delayed', '', ''
    save_live(base, id, job)
  else
    requeue(base, id, job, prio, data, 'error', err)
  end
  count(base, now, 'retried:' .. prio, 1)
  return { 'retry', now + delay }
end
dead_letter(base, prio, dead_max, id, err, attempt, max, user, data, now)
finish(base, id, job, 'failed', now, ttl_failed, 'error', err)
count(base, now, 'failed:' .. prio, 1)
return { 'dead' }
