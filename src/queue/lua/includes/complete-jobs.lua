-- Jobs finished by their owner, shared by complete and claim (which takes the completions of the
-- batch before it, so a busy worker sends one script per batch, not two). Only the current
-- attempt of a running job may complete it; a late answer from a stale worker is refused
-- ('stale') and changes nothing. Completing the same attempt again (a resend after a dropped
-- reply, or twice in one batch) answers 'ok' and changes nothing, so the caller still learns the
-- job is done.
-- A completed job leaves the live hash and its record is kept with the others
-- (keep_done_records): one HMGET and one HDEL of the live hash, one HSET, and one XACK and one
-- trim per stream for the whole batch. What else the record holds (the stream entry, priority,
-- user and counters) is read from the job's state, which the HMGET brings anyway: a completion
-- is its lease and result, three arguments, where the nine it was with those fields passed
-- along cost the caller more than their unpacking here costs Redis (bench/README.md, item 26).
-- A job with a hash of its own (its progress history, which the record keeps) costs a read and
-- a deletion more.
-- args[from..] are (id, attempt, result)
-- -> {'ok' | 'stale', ...} in the order given
local function complete_jobs(base, group, ttl, now, args, from)
  local out, records, keys, live_ids, entries, done, ended, users = {}, {}, {}, {}, {}, {}, {}, {}
  if #args < from then return out end
  local live = live_key(base)
  -- Every job's live state in one call.
  local values = {}
  for a = from, #args, 3000 do
    local ids = {}
    for b = a, math.min(a + 2999, #args), 3 do ids[#ids + 1] = args[b] end
    local found = redis.call('HMGET', live, unpack(ids))
    for n = 1, #ids do values[#values + 1] = found[n] or false end
  end
  -- Formatted once: a number turned into a string is a printf in Redis, and a record has one.
  local ended_at = string.format('%d', now)
  local n = 0
  for a = from, #args, 3 do
    n = n + 1
    local id, attempt = args[a], args[a + 1]
    local value = values[n]
    local state, job_attempt, hashed, entry, spent, max, created, prio, user
    if value then
      -- The nine values a record needs, without building the job: a running state as claim
      -- writes it, its counters whole (so spaceless, as a record's head must be).
      local ok, _, s, at, h, e, sp, mx, cr, pr, us = pcall(cmsgpack.unpack_limit, value, 9)
      if ok and s == 'running' and type(at) == 'string' and (h == '0' or h == '1') and type(e) == 'string'
        and whole(sp) and whole(mx) and type(cr) == 'string' and PRIORITY[pr] and type(us) == 'string' then
        state, job_attempt, hashed, entry, spent, max, created, prio, user = s, at, h, e, sp, mx, spaceless(cr, '0'),
          pr, us
      end
    end
    local job, unreadable
    if value and not state then
      job = unpack_live(value)
      unreadable = not job
    elseif not value then
      -- No live state: a job that ended (or completed), or one running since before the live hash,
      -- its state in its own hash. pcall: a key of another type there is no running job of this
      -- attempt ('stale'), not a reason to fail the batch and leave its other jobs running.
      local h = redis.pcall('HMGET', base .. 'j:' .. id, unpack(HASH_STATE))
      if h.err then unreadable = true else job = job_from_hash(h) end
    end
    if job then
      state, job_attempt, hashed = job.state, job.attempt, job.hashed and '1' or '0'
      -- claim writes the stream a running job was read from; a state damaged since cannot name
      -- one.
      entry, prio, user = job.entry, job.prio, job.user
      spent, max, created = spaceless(job.spent, '0'), spaceless(job.max, '1'), spaceless(job.created, '0')
    end
    if unreadable then
      out[#out + 1] = 'stale'
    elseif ended[id] == attempt or (state == 'completed' and job_attempt == attempt) then
      -- The same answer again: already done, say so again. (A job completed before records moved
      -- out of the hashes says so in its own.)
      out[#out + 1] = 'ok'
    elseif state == 'running' and job_attempt == attempt then
      local key = base .. 'j:' .. id -- job_key's, without the call (one per job)
      local steps = hashed == '1' and redis.pcall('HGET', key, 'steps')
      if type(steps) ~= 'string' then steps = '' end
      local record = done_record_of(attempt, PRIORITY[prio] and prio or '', ended_at, spent, max, created, user, steps,
        args[a + 2])
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
      if value then live_ids[#live_ids + 1] = id end
      if hashed == '1' then keys[#keys + 1] = key end
      ended[id] = attempt
      users[#users + 1] = user
      users[#users + 1] = id
      out[#out + 1] = 'ok'
    elseif not state then
      local found = done_record(base, id)
      out[#out + 1] = (found and string.match(found, '^(%d+) ') == attempt) and 'ok' or 'stale'
    else
      out[#out + 1] = 'stale'
    end
  end
  keep_done_records(base, now, ttl, records)
  for i = 1, #live_ids, 1000 do redis.call('HDEL', live, unpack(live_ids, i, math.min(i + 999, #live_ids))) end
  for i = 1, #keys, 1000 do redis.call('DEL', unpack(keys, i, math.min(i + 999, #keys))) end
  for prio, list in pairs(entries) do ack_and_delete_all(base, prio, group, list) end
  for prio, n in pairs(done) do count(base, now, 'completed:' .. prio, n) end
  -- Last: a user's slot frees only once the job it held is recorded as completed.
  for i = 1, #users, 2 do release_user(base, users[i], users[i + 1]) end
  return out
end
