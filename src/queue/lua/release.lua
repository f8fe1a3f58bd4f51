-- release: a worker that is shutting down gives back a job whose handler it stopped. The job
-- goes back to its stream at once instead of waiting out its lease, and the attempt is not
-- charged to it (neither its run's attempt budget nor its poison count): a deploy is not the
-- job's fault. A job with a cancel pending is left to the reclaimer, which ends it cancelled.
-- KEYS[1] base
-- ARGV group, consumer, id, attempt
-- -> 'ok' | 'stale'
-- @include common

local base, group, consumer, id, attempt = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = job_key(base, id)
local job = redis.call('HMGET', key, 'state', 'attempt', 'owner', 'prio', 'entry', 'cancel')
if job[1] ~= 'running' or job[2] ~= attempt or job[3] ~= consumer or job[6] == '1' then return 'stale' end
local data = job_data(base, id, job[4], job[5])
ack_and_delete(base, job[4], group, job[5])
requeue(base, id, job[4], data)
redis.call('HINCRBY', key, 'spent', 1)
return 'ok'
