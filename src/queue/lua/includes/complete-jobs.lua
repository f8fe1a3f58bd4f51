-- Jobs finished by their owner, shared by complete and claim (which takes the completions of the
-- batch before it, so a busy worker sends one script per batch, not two). Only the current
-- attempt of a running job may complete it; a late answer from a stale worker is refused
-- ('stale') and changes nothing. Completing the same attempt again (a resend after a dropped
-- reply) answers 'ok' and changes nothing, so the caller still learns the job is done.
-- A completed job's hash is deleted and its record kept with the others (keep_done_records).
-- The fence: a completion that carries its claim's stream entry is its attempt's while that entry
-- is pending, as every step that ends or moves an attempt (fail, release, reclaim) acknowledges
-- its entry in the same script, and a claim reads an entry once. So one XACK per stream answers
-- for the whole batch, and no job's hash is read. When it acknowledges fewer than it was given
-- (a stale answer or a resend among them), each job of that stream is checked against its hash,
-- as a completion that names no priority always is: one with only its lease, or of a job that
-- reported progress (its record keeps the history its hash holds). Only a hash damaged or
-- deleted under a pending entry could fail that check with its entry pending: the XACK has then
-- taken an entry that reclaim would otherwise have found.
-- The stream entries are acknowledged and deleted with one call per stream.
-- args[from..] are (id, attempt, prio, entry, user, spent, max, created, result): what the claim
-- handed out; prio '' for the hash's check, entry '' when the caller has only the lease.
-- -> {'ok' | 'stale', ...} in the order given
local function complete_jobs(base, group, ttl, now, args, from)
  local answers, records, keys, entries, acked_entries, done, ended = {}, {}, {}, {}, {}, {}, {}
  local fast, slow = {}, {}
  -- Formatted once: a number turned into a string is a printf in Redis, and a record has one.
  local ended_at = tostring(now)

  -- entry: one still to acknowledge, or nil (the fast path's are acknowledged already)
  local function keep(prio, entry, id, attempt, record, key, user)
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
    release_user(base, user, id)
  end

  for a = from, #args, 9 do
    local prio, entry = args[a + 2], args[a + 3]
    if PRIORITY[prio] and entry ~= '' then
      local group_of = fast[prio] or { entries = {}, at = {} }
      fast[prio] = group_of
      group_of.entries[#group_of.entries + 1] = entry
      group_of.at[#group_of.at + 1] = a
    else
      slow[#slow + 1] = a
    end
  end

  for prio, group_of in pairs(fast) do
    local key, list, acked = stream_key(base, prio), group_of.entries, 0
    for i = 1, #list, 1000 do
      acked = acked + redis.call('XACK', key, group, unpack(list, i, math.min(i + 999, #list)))
    end
    -- Deleted either way: an entry that was not pending was deleted by whatever ended its attempt.
    acked_entries[prio] = list
    if acked == #list then
      for _, a in ipairs(group_of.at) do
        local id, attempt, user = args[a], args[a + 1], args[a + 4]
        keep(prio, nil, id, attempt,
          done_record_of(attempt, prio, ended_at, args[a + 5], args[a + 6], args[a + 7], user, '', args[a + 8]),
          job_key(base, id), user)
        answers[a] = 'ok'
      end
    else
      for _, a in ipairs(group_of.at) do slow[#slow + 1] = a end
    end
  end

  for _, a in ipairs(slow) do
    local id, attempt, entry = args[a], args[a + 1], args[a + 3]
    local key = job_key(base, id)
    local job = redis.call('HMGET', key, 'state', 'attempt', 'prio', 'entry', 'user', 'spent', 'max',
      'created', 'steps')
    if job[1] == 'running' and job[2] == attempt and (entry == '' or entry == job[4]) then
      -- claim writes the stream a running job was read from; a hash damaged since cannot name one.
      keep(job[3], job[4], id, attempt,
        done_record_of(attempt, PRIORITY[job[3]] and job[3] or '', ended_at, spaceless(job[6], '0'),
          spaceless(job[7], '1'), spaceless(job[8], '0'), job[5] or '', job[9] or '', args[a + 8]),
        key, job[5])
      answers[a] = 'ok'
    elseif ended[id] == attempt or (job[1] == 'completed' and job[2] == attempt) then
      -- The same answer again (a resend after a dropped reply): already done, say so again. A job
      -- completed before records moved out of the hashes still says so in its own.
      answers[a] = 'ok'
    elseif not job[1] then
      local record = done_record(base, id)
      answers[a] = (record and string.match(record, '^(%d+) ') == attempt) and 'ok' or 'stale'
    else
      answers[a] = 'stale'
    end
  end

  keep_done_records(base, now, ttl, records)
  for i = 1, #keys, 1000 do redis.call('DEL', unpack(keys, i, math.min(i + 999, #keys))) end
  for prio, list in pairs(entries) do ack_and_delete_all(base, prio, group, list) end
  for prio, list in pairs(acked_entries) do
    local key = stream_key(base, prio)
    for i = 1, #list, 1000 do redis.call('XDEL', key, unpack(list, i, math.min(i + 999, #list))) end
  end
  for prio, n in pairs(done) do count(base, now, 'completed:' .. prio, n) end
  local out = {}
  for a = from, #args, 9 do out[#out + 1] = answers[a] end
  return out
end
