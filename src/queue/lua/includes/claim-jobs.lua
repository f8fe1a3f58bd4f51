-- Jobs claimed for one consumer, strictly by priority: shared by claim and by enqueue-handoff
-- (which claims for an idle worker of the enqueuing process in the enqueue's own call).
-- The first stream given is drained before the next is read; paused priorities are skipped. Each
-- claimed job's attempt counter goes up by one: that number is the fencing token of every later
-- transition.
-- Entries that name no task, or a task whose data is gone (or is not a hash), are dead-lettered
-- with a reason; entries left behind by a cancel or a requeue, or of a completed task, are
-- dropped. A task whose counters or priority are not what enqueue writes is failed unrun and
-- dead-lettered with the reason. None of them stops the claim.
-- -> jobs {id, data, live, ...}, how many jobs; live is the running state the claim wrote for
--    the job (pack_values), which holds everything else the worker needs: three values a job,
--    not each field as one.

-- Why a queued task's hash cannot be run, or nil. The attempt is the fencing token every later
-- script compares as a string and the worker echoes as an integer; attempt, spent and max are
-- arithmetic in this script and in fail; prio names the stream complete, fail and renew act on.
-- A value enqueue never writes (damaged or forged data) would make one of those scripts fail, or
-- the attempt unfenceable, and leave the entry pending forever (and, mid-batch, the entries read
-- with it): such a task is failed unrun instead. A missing counter is read as enqueue's default.
local function corrupt_task(attempt, max, spent, prio)
  if attempt and not whole(attempt) then
    return 'attempt ' .. shown(attempt) .. ' is not a whole number'
  end
  if spent and not whole(spent) then return 'spent ' .. shown(spent) .. ' is not a whole number' end
  if spent and whole(spent) > (attempt and whole(attempt) or 0) then
    return 'spent ' .. shown(spent) .. ' is more than attempt ' .. shown(attempt or '0')
  end
  if max and not (whole(max) and whole(max) >= 1) then
    return 'max ' .. shown(max) .. ' is not a whole number >= 1'
  end
  if not prio then return 'prio is missing' end
  if not PRIORITY[prio] then return 'prio ' .. shown(prio) .. ' is not urgent, high, normal or low' end
  return nil
end

local function claim_jobs(base, group, consumer, want, dead_max, ttl_failed, prios, now)
  -- A number handed to redis.call is formatted with printf, a cost per job: the start time is
  -- formatted once, and each attempt number once (most jobs of a claim share theirs).
  local started, attempt_text = string.format('%d', now), {}
  local paused = {}
  for _, prio in ipairs(redis.call('SMEMBERS', base .. 'paused')) do paused[prio] = true end

  local function read_new(key, n)
    local reply = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', arg_text(n), 'STREAMS', key, '>')
    if type(reply) == 'table' and reply.err then
      if not string.find(reply.err, 'NOGROUP', 1, true) then return error(reply) end
      -- A fresh (or restarted, empty) Redis: create the group from the start so nothing added
      -- before this moment is skipped.
      redis.call('XGROUP', 'CREATE', key, group, '0', 'MKSTREAM')
      reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', arg_text(n), 'STREAMS', key, '>')
    end
    if not reply then return {} end
    return reply[1][2]
  end

  local live = live_key(base)

  local function attempt_of(n)
    local text = attempt_text[n]
    if not text then
      -- %d, not tostring's %.14g: an attempt of 15 digits (enqueue allows them) stays exact.
      text = string.format('%d', n)
      attempt_text[n] = text
    end
    return text
  end

  local jobs, got = {}, 0

  -- Hands a job out; its running value goes into `writes` (one HSET per read) and, as it is, into
  -- the reply.
  local function run(id, prio, entry, data, attempt, spent, max, created, hashed, user, meta, writes)
    local next_attempt = (whole(attempt) or 0) + 1
    local text = attempt_of(next_attempt)
    -- prio: the entry being run is in this stream, whatever priority the task recorded; the
    -- scripts that end or renew the attempt acknowledge it where it is.
    local value = pack_values('running', text, hashed, entry, spent, max, created, prio, user, meta, started,
      consumer)
    writes[#writes + 1] = id
    writes[#writes + 1] = value
    local n = got * 3
    got = got + 1
    jobs[n + 1] = id
    jobs[n + 2] = data
    jobs[n + 3] = value
  end

  -- Tasks this claim ended: another entry of one in the same read is dropped, not ended again
  -- (the read's live states were read before either entry was seen).
  local ended = {}

  -- A task that cannot run: dead-lettered with the reason, failed unrun.
  local function fail_unrun(job, id, prio, entry, data, reason)
    ended[id] = true
    dead_letter(base, prio, dead_max, id, reason, whole(job.attempt) and job.attempt or 0,
      whole(job.max) and job.max or 1, job.user, data, now)
    ack_and_delete(base, prio, group, entry)
    finish(base, id, job, 'failed', now, ttl_failed, 'error', reason)
    count(base, now, 'failed:' .. prio, 1)
  end

  -- A task read for this entry: dropped unless it is queued from it, failed unrun if its counters
  -- (as read, absent ones nil) cannot run, else run.
  local function take(job, id, prio, entry, data, writes, attempt, max, spent, jprio)
    if job.state ~= 'queued' or job.entry ~= entry then
      ack_and_delete(base, prio, group, entry)
      return
    end
    local corrupt = corrupt_task(attempt, max, spent, jprio)
    if corrupt then
      fail_unrun(job, id, prio, entry, data, 'corrupt task data: ' .. corrupt)
    else
      run(id, prio, entry, data, job.attempt, job.spent, job.max, job.created, job.hashed and '1' or '0', job.user,
        job.meta, writes)
    end
  end

  -- An entry whose task has no live state: a job queued before the live hash existed (its state in
  -- its own hash, moved to the live hash as it runs), or one that ended or is gone.
  local function claim_from_hash(id, prio, entry, data, writes)
    local key = job_key(base, id)
    -- pcall: a key of another type under the task's name is bad input like any other, not a
    -- reason to fail this claim and strand the entries it has already read.
    local h = redis.pcall('HMGET', key, unpack(HASH_STATE))
    local job = not h.err and job_from_hash(h)
    -- The data is in the entry; a job enqueued before it moved there has it in its hash.
    if not data and job then data = redis.call('HGET', key, 'data') or '' end
    data = data or ''
    if h.err then
      dead_letter(base, prio, dead_max, id,
        'corrupt stream entry ' .. entry .. ': its task key is not a hash', 0, 1, '', '', now)
      ack_and_delete(base, prio, group, entry)
    elseif not job then
      -- A completed job keeps no hash: an entry of it left behind is dropped, as for any ended
      -- job.
      if not done_record(base, id) then
        dead_letter(base, prio, dead_max, id, 'orphan stream entry ' .. entry .. ': the task data is gone',
          0, 1, '', '', now)
      end
      ack_and_delete(base, prio, group, entry)
    else
      take(job, id, prio, entry, data, writes, h[2], h[4], h[3], h[6])
    end
  end

  -- An entry whose live state the fast path did not take: one that does not parse, another entry's
  -- or another state's, one with counters that cannot run, or one to run after all.
  local function claim_odd(id, prio, entry, data, value, writes)
    local job = unpack_live(value)
    if not job then
      ended[id] = true
      local reason = 'corrupt task data: its live state ' .. shown(value) .. ' does not parse'
      dead_letter(base, prio, dead_max, id, reason, 0, 1, '', data, now)
      ack_and_delete(base, prio, group, entry)
      fail_unreadable(base, id, now, ttl_failed, reason)
      count(base, now, 'failed:' .. prio, 1)
    else
      take(job, id, prio, entry, data, writes, job.attempt, job.max, job.spent, job.prio)
    end
  end

  for _, prio in ipairs(prios) do
    if got >= want then break end
    if not paused[prio] then
      local key = stream_key(base, prio)
      local exhausted = false
      while got < want and not exhausted do
        local entries = read_new(key, want - got)
        local n = #entries
        exhausted = n < want - got
        -- Every entry's task id, then their live states in one call ('' asked for an entry with no
        -- id, which `noid` marks).
        local ids, datas, noid = {}, {}, {}
        for k = 1, n do
          local fields = entries[k][2]
          -- Enqueue writes the fields as i, d: read so without a call (a call costs here, above).
          if fields and fields[1] == 'i' and fields[3] == 'd' then
            ids[k], datas[k] = fields[2], fields[4]
          else
            local id = entry_task_id(fields)
            ids[k], datas[k], noid[k] = id or '', entry_field(fields, 'd') or false, not id
          end
        end
        local values
        if n <= 1000 then
          values = n > 0 and redis.call('HMGET', live, unpack(ids)) or {}
        else
          values = {}
          for i = 1, n, 1000 do
            local found = redis.call('HMGET', live, unpack(ids, i, math.min(i + 999, n)))
            for k = 1, #found do values[i + k - 1] = found[k] end
          end
        end
        local writes = {}
        -- A numeric loop: ipairs calls its iterator, a C function, once per entry.
        for k = 1, n do
          local entry, id, data, value = entries[k][1], ids[k], datas[k], values[k]
          if noid[k] then
            dead_letter(base, prio, dead_max, '', 'corrupt stream entry ' .. entry .. ': no task id', 0, 1, '',
              cjson.encode(entries[k][2] or {}), now)
            ack_and_delete(base, prio, group, entry)
          elseif ended[id] then
            ack_and_delete(base, prio, group, entry)
          elseif not value then
            claim_from_hash(id, prio, entry, data or nil, writes)
          else
            data = data or job_data(base, id, prio, '')
            -- The first ten values (started and owner are empty while queued).
            local ok, _, state, attempt, hashed, jentry, spent, max, created, jprio, user, meta =
              pcall(cmsgpack.unpack_limit, value, 10)
            -- Checked as corrupt_task checks, without its calls: each whole() is a table read once
            -- a value was seen, and a job that passes them is what enqueue and the scripts write.
            local n_attempt, n_spent, n_max = whole(attempt), whole(spent), whole(max)
            if ok and state == 'queued' and jentry == entry and n_attempt and n_spent and n_max and n_max >= 1
              and n_spent <= n_attempt and PRIORITY[jprio] and (hashed == '0' or hashed == '1')
              and type(created) == 'string' and type(user) == 'string' and type(meta) == 'string' then
              run(id, prio, entry, data, attempt, spent, max, created, hashed, user, meta, writes)
            else
              claim_odd(id, prio, entry, data, value, writes)
            end
          end
        end
        for i = 1, #writes, 1000 do redis.call('HSET', live, unpack(writes, i, math.min(i + 999, #writes))) end
      end
    end
  end
  return jobs, got
end
