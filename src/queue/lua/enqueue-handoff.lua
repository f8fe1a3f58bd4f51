-- enqueue-handoff: enqueue, then claim for an idle worker of the enqueuing process in the same
-- call, so that the enqueue's answer carries the job to that worker: it starts a round trip
-- sooner than when woken by the new entry, whose own claim would be a second. The claim is
-- claim's (claim_jobs: strictly by priority, paused priorities skipped), made only when the
-- enqueue put an entry in a stream; it may hand out an older entry than the new one, as the
-- worker's own claim would have.
-- KEYS[1] base
-- ARGV group, consumer, want, dead_max, ttl_failed, n_prio, prio (n_prio times), then enqueue's
--      ARGV
-- -> { enqueue's answer, {id, data, live, ...} claimed (as claim's) }
-- @include common
-- @include enqueue-jobs
-- @include claim-jobs

local base, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local last_prio = 6 + tonumber(ARGV[6])
local now = now_ms()
local out, refused = enqueue_jobs(base, ARGV, last_prio + 1, now)
if not out then return redis.error_reply(refused) end
local entered = false
for i = 1, #out, 2 do
  if out[i] == 'OK' and out[i + 1] ~= '' then entered = true end
end
local jobs = {}
if entered then
  local prios = {}
  for a = 7, last_prio do prios[#prios + 1] = ARGV[a] end
  jobs = claim_jobs(base, group, consumer, tonumber(ARGV[3]), ARGV[4], ARGV[5], prios, now)
  -- The job handed over is the one just enqueued (a task has one live entry, which the claim
  -- checked): no worker is to wake for its entry. The claim read its stream up to that entry, so
  -- nothing before it waits unread.
  if jobs[1] ~= nil and jobs[1] == ARGV[last_prio + 1] then
    settle_wake(stream_key(base, ARGV[last_prio + 3]), wake_group(group), out[2])
  end
end
return { out, jobs }
