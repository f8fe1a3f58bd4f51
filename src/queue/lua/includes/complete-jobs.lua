-- Jobs finished by their owner, shared by complete and claim (which takes the completions of the
-- batch before it, so a busy worker sends one script per batch, not two). Only the current
-- attempt of a running job may complete it; a late answer from a stale worker is refused
-- ('stale') and changes nothing. Completing the same attempt again (a resend after a dropped
-- reply) answers 'ok' and changes nothing, so the caller still learns the job is done.
-- The stream entries are acknowledged and deleted with one call per stream: a call per job was
-- most of the cost. args[from..] are (id, attempt, result) triples.
-- -> {'ok' | 'stale', ...} in the order given
local function complete_jobs(base, group, ttl, now, args, from)
  local out, done, entries = {}, {}, {}
  for a = from, #args, 3 do
    local id, attempt, result = args[a], args[a + 1], args[a + 2]
    local key = job_key(base, id)
    local job = redis.call('HMGET', key, 'state', 'attempt', 'prio', 'entry', 'user', 'due', 'cancel')
    if job[1] == 'running' and job[2] == attempt then
      local prio = job[3]
      -- claim writes the stream a running job was read from; a hash damaged since cannot name one.
      if PRIORITY[prio] then
        if job[4] and job[4] ~= '' then
          local list = entries[prio] or {}
          list[#list + 1] = job[4]
          entries[prio] = list
        end
        done[prio] = (done[prio] or 0) + 1
      end
      redis.call('HSET', key, 'state', 'completed', 'ended', now, 'entry', '', 'owner', '', 'result', result)
      -- Read above rather than deleted blind: a job that has neither (most) saves the call.
      if job[6] or job[7] then redis.call('HDEL', key, 'due', 'cancel') end
      if ttl > 0 then redis.call('EXPIRE', key, ttl) end
      release_user(base, job[5], id)
      out[#out + 1] = 'ok'
    elseif job[1] == 'completed' and job[2] == attempt then
      -- The same answer again (a resend after a dropped reply): already done, say so again.
      out[#out + 1] = 'ok'
    else
      out[#out + 1] = 'stale'
    end
  end
  for prio, list in pairs(entries) do ack_and_delete_all(base, prio, group, list) end
  for prio, n in pairs(done) do count(base, now, 'completed:' .. prio, n) end
  return out
end
