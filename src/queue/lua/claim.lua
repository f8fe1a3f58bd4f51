-- claim: up to `want` jobs for one consumer, strictly by priority: the first stream given is
-- drained before the next is read; paused priorities are skipped. Each claimed job's attempt
-- counter goes up by one: that number is the fencing token of every later transition.
-- Entries that name no task, or a task whose data is gone (or is not a hash), are dead-lettered
-- with a reason; entries left behind by a cancel or a requeue, or of a completed task, are
-- dropped. A task whose counters or priority are not what enqueue writes is failed unrun and
-- dead-lettered with the reason.
-- None of them stops the claim.
-- When fewer than `want` jobs were found, the newest entry id of each stream read is returned,
-- with the signal stream's, so the caller can block (XREAD) for anything newer without missing
-- an entry added meanwhile.
-- The worker's completions of the batch before come first, as `complete` would take them, so
-- that its slots are free and its users' locks released before the claim.
-- KEYS[1] base
-- ARGV group, consumer, want, dead_max, ttl_failed, ttl_completed, n_prio, prio (n_prio times),
--      (id, attempt, prio, entry, user, spent, max, created, result)... of the completions
-- -> { {id, attempt, prio, max, data, user, created, run_attempt, meta, entry, ...},
--      {prio, cursor, ...}, {'ok' | 'stale', ...} for the completions, in their order }
-- @include common
-- @include complete-jobs

local base, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local want, dead_max, ttl_failed = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local last_prio = 7 + tonumber(ARGV[7])
local now = now_ms()
local completed = complete_jobs(base, group, tonumber(ARGV[6]), now, ARGV, last_prio + 1)
-- A number handed to redis.call is formatted with printf, a cost per job: the start time is
-- formatted once, and each attempt number once (most jobs of a claim share theirs).
local started, attempt_text = string.format('%d', now), {}

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

local paused = {}
for _, prio in ipairs(redis.call('SMEMBERS', base .. 'paused')) do paused[prio] = true end

local function read_new(key, n)
  local reply = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n, 'STREAMS', key, '>')
  if type(reply) == 'table' and reply.err then
    if not string.find(reply.err, 'NOGROUP', 1, true) then return error(reply) end
    -- A fresh (or restarted, empty) Redis: create the group from the start so nothing added
    -- before this moment is skipped.
    redis.call('XGROUP', 'CREATE', key, group, '0', 'MKSTREAM')
    reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n, 'STREAMS', key, '>')
  end
  if not reply then return {} end
  return reply[1][2]
end

local jobs, cursors, got, exhausted_keys = {}, {}, 0, {}
for a = 8, last_prio do
  local prio = ARGV[a]
  if got >= want then break end
  if not paused[prio] then
    local key = stream_key(base, prio)
    local exhausted = false
    while got < want and not exhausted do
      local entries = read_new(key, want - got)
      exhausted = #entries < want - got
      -- A numeric loop: ipairs calls its iterator, a C function, once per entry.
      for k = 1, #entries do
        local entry, fields = entries[k][1], entries[k][2]
        -- Enqueue writes the fields as i, d: read so without a call (a call costs here, above).
        local id, data
        if fields and fields[1] == 'i' and fields[3] == 'd' then
          id, data = fields[2], fields[4]
        else
          id, data = entry_task_id(fields), entry_field(fields, 'd')
        end
        local key = id and base .. 'j:' .. id -- job_key's, without the call
        -- pcall: a key of another type under the task's name is bad input like any other, not a
        -- reason to fail this claim and strand the entries it has already read.
        local job = id and redis.pcall('HMGET', key, 'state', 'entry', 'attempt', 'max', 'meta', 'user',
          'created', 'spent', 'prio')
        local corrupt = job and not job.err and job[1] == 'queued' and job[2] == entry
          and corrupt_task(job[3], job[4], job[8], job[9])
        -- The data is in the entry; a job enqueued before it moved there has it in its hash.
        if not data and job and not job.err and job[1] then data = redis.call('HGET', key, 'data') or '' end
        data = data or ''
        if not id then
          dead_letter(base, prio, dead_max, '', 'corrupt stream entry ' .. entry .. ': no task id', 0, 1, '',
            cjson.encode(fields or {}), now)
          ack_and_delete(base, prio, group, entry)
        elseif job.err then
          dead_letter(base, prio, dead_max, id,
            'corrupt stream entry ' .. entry .. ': its task key is not a hash', 0, 1, '', '', now)
          ack_and_delete(base, prio, group, entry)
        elseif not job[1] then
          -- A completed job keeps no hash: an entry of it left behind is dropped, as for any ended
          -- job.
          if not done_record(base, id) then
            dead_letter(base, prio, dead_max, id, 'orphan stream entry ' .. entry .. ': the task data is gone',
              0, 1, '', '', now)
          end
          ack_and_delete(base, prio, group, entry)
        elseif job[1] ~= 'queued' or job[2] ~= entry then
          ack_and_delete(base, prio, group, entry)
        elseif corrupt then
          local reason = 'corrupt task data: ' .. corrupt
          dead_letter(base, prio, dead_max, id, reason, whole(job[3]) and job[3] or 0,
            whole(job[4]) and job[4] or 1, job[6], data, now)
          ack_and_delete(base, prio, group, entry)
          finish(base, id, job[6], 'failed', now, ttl_failed, 'error', reason)
          count(base, now, 'failed:' .. prio, 1)
        else
          local attempt = (job[3] and whole(job[3]) or 0) + 1
          local text = attempt_text[attempt]
          if not text then
            -- %d, not tostring's %.14g: an attempt of 15 digits (enqueue allows them) stays exact.
            text = string.format('%d', attempt)
            attempt_text[attempt] = text
          end
          -- prio: the entry being run is in this stream, whatever priority the task recorded; the
          -- scripts that end or renew the attempt acknowledge it where it is.
          redis.call('HSET', key, 'state', 'running', 'attempt', text, 'owner', consumer, 'started', started,
            'prio', prio)
          local n = got * 10
          got = got + 1
          jobs[n + 1] = id
          jobs[n + 2] = attempt
          jobs[n + 3] = prio
          jobs[n + 4] = job[4] or '1'
          jobs[n + 5] = data
          jobs[n + 6] = job[6] or ''
          jobs[n + 7] = job[7] or '0'
          jobs[n + 8] = attempt - (job[8] and whole(job[8]) or 0)
          jobs[n + 9] = job[5] or ''
          jobs[n + 10] = entry
        end
      end
    end
    if exhausted then exhausted_keys[#exhausted_keys + 1] = prio end
  end
end
-- Cursors only for a claim that comes back short: a full one is followed by another claim, not
-- a wait, and an empty stream of a higher priority would cost a call per claim for nothing.
if got < want then
  for _, prio in ipairs(exhausted_keys) do
    local last = redis.call('XREVRANGE', stream_key(base, prio), '+', '-', 'COUNT', 1)
    cursors[#cursors + 1] = prio
    cursors[#cursors + 1] = (last[1] and last[1][1]) or '0-0'
  end
  local tip = redis.call('XREVRANGE', base .. 'signal', '+', '-', 'COUNT', 1)
  cursors[#cursors + 1] = 'signal'
  cursors[#cursors + 1] = (tip[1] and tip[1][1]) or '0-0'
end
return { jobs, cursors, completed }
