-- enqueue: new jobs, each into its priority's stream or the delayed set (enqueue_jobs, in
-- enqueue-jobs.lua, says how each is judged).
-- KEYS[1] base
-- ARGV (id, user ('' = no user rule), prio, data, max_attempts, delay_ms, after_attempt, replace_ended,
--      meta (request id and trace context, for logs and traces; '' = none))...
-- -> {'OK', entry_or_empty | 'ACTIVE', active_id | 'DUPLICATE', id, ...}: two values per job
-- @include common
-- @include enqueue-jobs

local out, refused = enqueue_jobs(KEYS[1], ARGV, 1, now_ms())
if not out then return redis.error_reply(refused) end
return out
