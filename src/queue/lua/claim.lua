-- claim: up to `want` jobs for one consumer, strictly by priority (claim_jobs, in claim-jobs.lua,
-- says how, and what becomes of entries that cannot run).
-- When fewer than `want` jobs were found, the newest entry id of each stream read is returned,
-- with the signal stream's, so the caller can block (XREAD) for anything newer without missing
-- an entry added meanwhile.
-- The worker's completions of the batch before come first, as `complete` would take them, so
-- that its slots are free and its users' locks released before the claim.
-- KEYS[1] base
-- ARGV group, consumer, want, dead_max, ttl_failed, ttl_completed, n_prio, prio (n_prio times),
--      (id, attempt, result)... of the completions
-- -> { {id, data, live, ...}, {prio, cursor, ...}, {'ok' | 'stale', ...} for the completions, in
--      their order }; live is the running state the claim wrote for the job (pack_values), which
--      holds everything else the worker needs: three values a job, not each field as one.
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
local jobs, exhausted_keys, got = claim_jobs(base, group, consumer, want, ARGV[4], ARGV[5], prios, now)

local cursors = {}
-- Cursors only for a claim that comes back short: a full one is followed by another claim, not
-- a wait, and an empty stream of a higher priority would cost a call per claim for nothing.
if got < want then
  for _, prio in ipairs(exhausted_keys) do
    local last = redis.call('XREVRANGE', stream_key(base, prio), '+', '-', 'COUNT', '1')
    cursors[#cursors + 1] = prio
    cursors[#cursors + 1] = (last[1] and last[1][1]) or '0-0'
  end
  local tip = redis.call('XREVRANGE', base .. 'signal', '+', '-', 'COUNT', '1')
  cursors[#cursors + 1] = 'signal'
  cursors[#cursors + 1] = (tip[1] and tip[1][1]) or '0-0'
end
return { jobs, cursors, completed }
