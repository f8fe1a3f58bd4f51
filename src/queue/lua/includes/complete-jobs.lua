-- Jobs finished by their owner, shared by complete and claim (which takes the completions of the
-- batch before it, so a busy worker sends one script per batch, not two). Only the current
-- attempt of a running job may complete it; a late answer from a stale worker is refused
-- ('stale') and changes nothing. Completing the same attempt again (a resend after a dropped
-- reply, or twice in one batch) answers 'ok' and changes nothing, so the caller still learns the
-- job is done.
-- A completed job's hash is deleted and its record kept with the others (keep_done_records): one
-- HSET, one DEL, one XACK and one XDEL per stream for the whole batch. The one read per job is
-- the fence (state and attempt) and the progress history; what else the record holds (the
-- stream entry, priority, user and counters) comes with the completion, as its claim handed it
-- out, and is read from the hash only for a completion that has just its lease.
-- args[from..] are (id, attempt, prio, entry, user, spent, max, created, result); prio '' for a
-- bare lease.
-- -> {'ok' | 'stale', ...} in the order given
local function complete_jobs(base, group, ttl, now, args, from)
  local out, records, keys, entries, done, ended, users = {}, {}, {}, {}, {}, {}, {}
  -- Formatted once: a number turned into a string is a printf in Redis, and a record has one.
  local ended_at = string.format('%d', now)
  for a = from, #args, 9 do
    local id, attempt, prio = args[a], args[a + 1], args[a + 2]
    local key = base .. 'j:' .. id -- job_key's, without the call (one per job)
    local claimed = PRIORITY[prio]
    -- pcall: a key of another type under the job's name is no running job of this attempt
    -- ('stale'), not a reason to fail the batch and leave its other jobs running.
    local job
    if claimed then
      job = redis.pcall('HMGET', key, 'state', 'attempt', 'steps')
    else
      job = redis.pcall('HMGET', key, 'state', 'attempt', 'steps', 'prio', 'entry', 'user', 'spent', 'max',
        'created')
    end
    if job.err then
      out[#out + 1] = 'stale'
    elseif ended[id] == attempt or (job[1] == 'completed' and job[2] == attempt) then
      -- The same answer again: already done, say so again. (A job completed before records moved
      -- out of the hashes says so in its own.)
      out[#out + 1] = 'ok'
    elseif job[1] == 'running' and job[2] == attempt then
      local entry, user, record
      if claimed then
        entry, user = args[a + 3], args[a + 4]
        record = done_record_of(attempt, prio, ended_at, args[a + 5], args[a + 6], args[a + 7], user,
          job[3] or '', args[a + 8])
      else
        -- claim writes the stream a running job was read from; a hash damaged since cannot name
        -- one.
        prio, entry, user = job[4], job[5], job[6] or ''
        record = done_record_of(attempt, PRIORITY[prio] and prio or '', ended_at, spaceless(job[7], '0'),
          spaceless(job[8], '1'), spaceless(job[9], '0'), user, job[3] or '', args[a + 8])
      end
      if PRIORITY[prio] then
        if entry and entry ~= '' then
          local list = entries[prio] or {}
          list[#list + 1] = entry
          entries[prio] = list
        end
        done[prio] = (done[prio] or 0) + 1
      end
      records[#records + 1] = id
      records[#records + 1] = record
      keys[#keys + 1] = key
      ended[id] = attempt
      users[#users + 1] = user
      users[#users + 1] = id
      out[#out + 1] = 'ok'
    elseif not job[1] then
      local found = done_record(base, id)
      out[#out + 1] = (found and string.match(found, '^(%d+) ') == attempt) and 'ok' or 'stale'
    else
      out[#out + 1] = 'stale'
    end
  end
  keep_done_records(base, now, ttl, records)
  for i = 1, #keys, 1000 do redis.call('DEL', unpack(keys, i, math.min(i + 999, #keys))) end
  for prio, list in pairs(entries) do ack_and_delete_all(base, prio, group, list) end
  for prio, n in pairs(done) do count(base, now, 'completed:' .. prio, n) end
  -- Last: a user's slot frees only once the job it held is recorded as completed.
  for i = 1, #users, 2 do release_user(base, users[i], users[i + 1]) end
  return out
end
