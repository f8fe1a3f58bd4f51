-- claim: up to `want` jobs for one consumer, strictly by priority (claim_jobs, in claim-jobs.lua,
-- says how, and what becomes of entries that cannot run).
-- When fewer than `want` jobs were found, the stream and the signal stream of each of the worker's
-- priorities (paused ones too) have their wake group moved to their last entry: the worker blocks
-- on those groups next (Queue.waitForWork), woken by anything added after this call and nothing
-- before.
-- The worker's completions of the batch before come first, as `complete` would take them, so
-- that its slots are free and its users' locks released before the claim.
-- KEYS[1] base
-- ARGV group, consumer, want, dead_max, ttl_failed, ttl_completed, n_prio, prio (n_prio times),
--      (id, attempt, result)... of the completions
-- -> { {id, data, live, ...}, {'ok' | 'stale', ...} for the completions, in their order }; live
--      is the running state the claim wrote for the job (pack_values), which holds everything else
--      the worker needs: three values a job, not each field as one.
-- @include common
-- @include complete-jobs
-- @include claim-jobs

local base, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local want = tonumber(ARGV[3])
local last_prio = 7 + tonumber(ARGV[7])
local now = now_ms()
local completed = complete_jobs(base, group, tonumber(ARGV[6]), now, ARGV, last_prio + 1)
local prios = {}
for a = 8, last_prio do prios[#prios + 1] = ARGV[a] end
local jobs, got = claim_jobs(base, group, consumer, want, ARGV[4], ARGV[5], prios, now)

if got < want then
  -- Only for a claim that comes back short: a full one is followed by another claim, not a wait.
  local wake = wake_group(group)
  for _, prio in ipairs(prios) do
    settle_wake(stream_key(base, prio), wake, '$')
    settle_wake(signal_key(base, prio), wake, '$')
  end
end
return { jobs, completed }
