-- complete: jobs finished by their owner. Only the current attempt of a running job may
-- complete it; a late answer from a stale worker is refused ('stale') and changes nothing.
-- Completing the same attempt again (a resend after a dropped reply) answers 'ok' and changes
-- nothing, so the caller still learns the job is done.
-- KEYS[1] base
-- ARGV group, ttl_seconds, (id, attempt, result)...
-- -> {'ok' | 'stale', ...} in the order given
-- @include common

local base, group, ttl = KEYS[1], ARGV[1], ARGV[2]
local now = now_ms()
local out, done = {}, {}
for a = 3, #ARGV, 3 do
  local id, attempt, result = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local job = redis.call('HMGET', job_key(base, id), 'state', 'attempt', 'prio', 'entry', 'user')
  if job[1] == 'running' and job[2] == attempt then
    ack_and_delete(base, job[3], group, job[4])
    finish(base, id, job[5], 'completed', now, ttl, 'result', result)
    redis.call('HDEL', job_key(base, id), 'cancel')
    done[job[3]] = (done[job[3]] or 0) + 1
    out[#out + 1] = 'ok'
  elseif job[1] == 'completed' and job[2] == attempt then
    -- The same answer again (a resend after a dropped reply): already done, say so again.
    out[#out + 1] = 'ok'
  else
    out[#out + 1] = 'stale'
  end
end
for prio, n in pairs(done) do count(base, now, 'completed:' .. prio, n) end
return out
