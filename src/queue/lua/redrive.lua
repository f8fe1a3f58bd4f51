-- redrive: dead letters of one priority go back to their stream as fresh jobs with a new run of
-- max attempts ('spent' remembers the attempts of earlier runs). The attempt counter keeps
-- counting up, so no stale worker of an old attempt can touch the new one. The one-active-task-
-- per-user rule holds here too.
-- A letter whose task data is still there but unusable is refused as 'corrupt' and kept: a task
-- key that is not a hash, or an attempt that is not a whole number (claim dead-letters both as
-- corrupt). The attempt is the fencing token: with its history unreadable, no number for the new
-- run is known to be above every earlier attempt a stale worker may still answer for, so
-- resetting it could let such a worker complete the new run. Spent, max and prio need no such
-- care: the redrive writes them afresh. Once the task data has expired, the letter's own
-- counters (claim writes 0 for a bad attempt) are used, as for any letter.
-- KEYS[1] base
-- ARGV prio, (dead entry id)...
-- -> {'ok' | 'active:<task id>' | 'missing' | 'corrupt', ...} in the order given
-- @include common

local base, prio = KEYS[1], ARGV[1]
if not PRIORITY[prio] then return redis.error_reply('ERR unknown priority ' .. tostring(prio)) end
local dkey = dead_key(base, prio)
local now = now_ms()
local out = {}
for a = 2, #ARGV do
  local found = redis.call('XRANGE', dkey, ARGV[a], ARGV[a], 'COUNT', 1)[1]
  if not found then
    out[#out + 1] = 'missing'
  else
    local f = {}
    for n = 1, #found[2], 2 do f[found[2][n]] = found[2][n + 1] end
    local id, user = f['i'] or '', f['user'] or ''
    local key = job_key(base, id)
    -- A task whose state cannot be read (its key of another type, its live state not parsing)
    -- makes this letter corrupt, not the call fail (and with it the letters after it).
    local job, unreadable
    if id ~= '' then job, unreadable = load_job(base, id) end
    local state = job and job.state
    local attempt = job and job.attempt or f['attempt'] or '0'
    -- A run that completed after the letter was written (its task came back and ran) keeps no
    -- hash: its record's attempt is the highest handed out, and the new run starts above it.
    local record = id ~= '' and job == nil and done_record(base, id)
    local completed_attempt = record and string.match(record, '^(%d+) ')
    if completed_attempt and whole(attempt) and tonumber(completed_attempt) > tonumber(attempt) then
      attempt = completed_attempt
    end
    -- A key of another type under the lock's name reads as no lock; the redrive's SET replaces it.
    local active = user ~= '' and user_lock(base, user)
    if id == '' or (f['data'] or '') == '' or job == false then
      out[#out + 1] = 'corrupt'
    elseif active and active ~= id and is_live(base, active) then
      out[#out + 1] = 'active:' .. active
    elseif state == 'queued' or state == 'delayed' or state == 'running' then
      -- Already back in play (redriven twice): drop the dead letter only.
      redis.call('XDEL', dkey, ARGV[a])
      out[#out + 1] = 'ok'
    elseif not whole(attempt) then
      out[#out + 1] = 'corrupt'
    else
      redis.call('DEL', key)
      if record then forget_done_records(base, id) end
      local fresh = { attempt = attempt, spent = attempt, max = f['max'] or '1', created = string.format('%d', now),
        user = user, meta = '', started = '', hashed = false }
      requeue(base, id, fresh, prio, f['data'])
      if user ~= '' then redis.call('SET', user_key(base, user), id) end
      redis.call('XDEL', dkey, ARGV[a])
      out[#out + 1] = 'ok'
    end
  end
end
return out
