-- New jobs, shared by enqueue and enqueue-handoff: each enters its priority's stream (or the
-- delayed set when delay_ms > 0).
-- The one-active-task-per-user rule is checked in the same step, so 50 racing submissions of one
-- user leave exactly one job. A lock naming a job that is no longer active is stale and replaced.
-- A task coming back from the database ledger carries the attempts it already used (after_attempt):
-- its next claim continues from there, so an attempt number is never handed out twice, whichever
-- Redis or database ran the earlier ones. With replace_ended, an ended job of the same id (a
-- leftover of a run the ledger has since moved elsewhere) gives way to the new one.
-- A key of another type under the job's id is corruption, not a job: the enqueue is refused as
-- DUPLICATE (with or without replace_ended, as it is no ended job) and the key left as it is for
-- a person to look at. Deleting it would silently destroy data the queue did not write; failing
-- with WRONGTYPE would give the caller an untyped Lua error instead of a refusal it handles.
-- Many jobs may come in one call (a bulk enqueue): each is judged on its own, in order, and a
-- refusal of one leaves the others as they are. A completed job is one whose hash is gone and
-- whose record is kept (complete-jobs): a duplicate too, or replaced like any ended job.
-- args[from..] are (id, user ('' = no user rule), prio, data, max_attempts, delay_ms, after_attempt,
-- replace_ended, meta (request id and trace context, for logs and traces; '' = none))...
-- -> {'OK', entry_or_empty | 'ACTIVE', active_id | 'DUPLICATE', id, ...}: two values per job; or
--    nil and an error's text, with nothing written, for an unknown priority
local function enqueue_jobs(base, args, from, now)
  -- Formatted once: a number handed to redis.call is a printf each time.
  local created = string.format('%d', now)

  -- The ids of this call that have a completed record (a completed job keeps no hash), and in
  -- which buckets: read once per call, a call per bucket for all its jobs, so a bulk enqueue does
  -- not pay a lookup per job.
  local buckets, remembered
  local function completed_before(id)
    if not remembered then
      buckets, remembered = redis.call('ZRANGE', done_index(base), 0, -1), {}
      local ids = {}
      for a = from, #args, 9 do ids[#ids + 1] = args[a] end
      for _, bucket in ipairs(buckets) do
        for i = 1, #ids, 1000 do
          local last = math.min(i + 999, #ids)
          local found = redis.call('HMGET', bucket, unpack(ids, i, last))
          for n = 1, last - i + 1 do
            if found[n] then remembered[ids[i + n - 1]] = true end
          end
        end
      end
    end
    return remembered[id]
  end

  local live = live_key(base)

  local function enqueue(id, user, prio, data, max, delay, after, replace_ended, meta)
    if redis.call('HEXISTS', live, id) == 1 then return 'DUPLICATE', id end
    local key = job_key(base, id)
    -- pcall: a key of another type is refused as DUPLICATE (see above), before the user's lock is taken.
    local existing = redis.pcall('HGET', key, 'state')
    if type(existing) == 'table' then return 'DUPLICATE', id end
    if existing then
      local ended = existing == 'completed' or existing == 'failed' or existing == 'cancelled'
      if not (replace_ended and ended) then return 'DUPLICATE', id end
    elseif completed_before(id) and not replace_ended then
      return 'DUPLICATE', id
    end

    if user ~= '' then
      local lock = user_key(base, user)
      -- A key of another type under the lock's name reads as no lock; the SET below replaces it.
      local active = user_lock(base, user)
      -- A lock naming a task that is not live (ended, gone, or unreadable: claim dead-letters a task
      -- whose state cannot be read without knowing its user, so the lock stays) is stale and
      -- replaced, where refusing would refuse every later task of the user.
      if active and active ~= id and is_live(base, active) then return 'ACTIVE', active end
      redis.call('SET', lock, id)
    end

    -- What this run replaces goes only now, once nothing can refuse it: a refusal changes nothing.
    -- Unconditionally: a hash left by a live job whose live state was lost (progress, a cancel
    -- request, a reclaim count) would otherwise pass to this run.
    redis.call('DEL', key)
    if replace_ended and completed_before(id) then
      -- Gone, so that no reader takes an old run's record for this run's once this one's hash goes.
      for _, bucket in ipairs(buckets) do redis.call('HDEL', bucket, id) end
      remembered[id] = nil
    end

    local job = { state = 'queued', attempt = after, spent = after, max = max, created = created, prio = prio,
      entry = '', started = '', hashed = false, user = user, meta = meta, owner = '' }
    if delay > 0 then
      -- A delayed job has no entry yet: its data waits in its own hash.
      redis.call('ZADD', delayed_key(base, prio), now + delay, id)
      add_to_hash(base, id, job, 'due', now + delay, 'data', data)
      job.state = 'delayed'
      save_live(base, id, job)
      return 'OK', ''
    end
    job.entry = redis.call('XADD', stream_key(base, prio), '*', 'i', id, 'd', data)
    save_live(base, id, job)
    return 'OK', job.entry
  end

  -- A count as given ('' or absent: 0), kept as text: a number of 15 digits stays exact.
  local function whole_text(value)
    if value == nil or value == '' then return '0' end
    return value
  end

  -- Checked before anything is written: a bad call changes nothing.
  for a = from + 2, #args, 9 do
    if not PRIORITY[args[a]] then return nil, 'ERR unknown priority ' .. tostring(args[a]) end
  end
  local out = {}
  for a = from, #args, 9 do
    local status, value = enqueue(args[a], args[a + 1], args[a + 2], args[a + 3], args[a + 4], tonumber(args[a + 5]),
      whole_text(args[a + 6]), args[a + 7] == '1', args[a + 8] or '')
    out[#out + 1] = status
    out[#out + 1] = value
  end
  return out
end
