-- reclaim: entries whose owner stopped renewing for longer than the lease (a crashed or frozen
-- worker) are taken over and their jobs put back at the tail of their stream. The old owner's
-- attempt is stale from here on: its late answers are refused. A job reclaimed more than
-- max_reclaims times is poison (it kills or stalls every worker that runs it): dead-lettered.
-- Entries that name no task, or a task whose data is gone (or is not a hash), are dead-lettered
-- with a reason. A running task whose reclaim count is not a whole number is failed and
-- dead-lettered as corrupt, as claim does with its counters. An entry delivered whose job is still
-- queued from it (a claim that failed after its read) is put back, uncharged.
-- KEYS[1] base
-- XAUTOCLAIM scans at most count*10 pending entries a call, so a long pending list of live jobs
-- is walked in steps: each priority's cursor is passed in and the next one handed back.
-- ARGV group, consumer, lease_ms, max_reclaims, count, dead_max, ttl_failed, ttl_cancelled,
--      cursor_urgent, cursor_high, cursor_normal, cursor_low
-- -> {requeued, dead, {next cursor per priority ('0-0' when its scan went round)}}
-- @include common

local base, group, consumer, lease = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local max_reclaims, batch, dead_max = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local ttl_failed, ttl_cancelled = ARGV[7], ARGV[8]
local now = now_ms()
local requeued, dead, cursors = 0, 0, {}

for p, prio in ipairs(PRIORITIES) do
  local key = stream_key(base, prio)
  local reply = redis.pcall('XAUTOCLAIM', key, group, consumer, lease, ARGV[8 + p] or '0-0', 'COUNT', batch)
  if type(reply) == 'table' and reply.err then
    if not string.find(reply.err, 'NOGROUP', 1, true) then return error(reply) end
    reply = nil
  end
  if reply then
    cursors[p] = reply[1]
    for _, e in ipairs(reply[2]) do
      local entry, fields = e[1], e[2]
      local id = entry_task_id(fields)
      local job, unreadable, in_live
      if id then job, unreadable, in_live = load_job(base, id) end
      -- pcall, as in claim: a key of another type under the task's name is bad input to dead-letter,
      -- not an error that fails this reclaim (for every priority) on each call while it stays pending.
      local own = job and redis.pcall('HMGET', job_key(base, id), 'reclaims', 'cancel', 'data')
      -- A live job whose own key is of another type cannot take a reclaim count: unreadable.
      if own and own.err then job, unreadable, in_live = false, 'its task key is not a hash', job.live end
      if not own or own.err then own = {} end
      local data = entry_field(fields, 'd') or own[3] or ''
      ack_and_delete(base, prio, group, entry)
      if not id then
        dead_letter(base, prio, dead_max, '', 'corrupt stream entry ' .. entry .. ': no task id', 0, 1, '',
          cjson.encode(fields or {}), now)
        dead = dead + 1
      elseif job == false then
        if in_live then
          local reason = (unreadable == 'its task key is not a hash' and 'corrupt stream entry ' .. entry .. ': '
            or 'corrupt task data: ') .. unreadable
          dead_letter(base, prio, dead_max, id, reason, 0, 1, '', data, now)
          fail_unreadable(base, id, now, ttl_failed, reason)
          count(base, now, 'failed:' .. prio, 1)
        else
          dead_letter(base, prio, dead_max, id, 'corrupt stream entry ' .. entry .. ': ' .. unreadable, 0, 1, '',
            '', now)
        end
        dead = dead + 1
      elseif not job then
        -- A completed job keeps no hash: an entry of it left behind is dropped (acknowledged
        -- above).
        if not done_record(base, id) then
          dead_letter(base, prio, dead_max, id, 'orphan stream entry ' .. entry .. ': the task data is gone',
            0, 1, '', '', now)
          dead = dead + 1
        end
      elseif job.state == 'running' and job.entry == entry then
        -- The count is arithmetic here. A value reclaim never writes (damaged or forged data) would
        -- fail this reclaim, for every priority, on each call while the entry stays pending: the
        -- task is failed instead (the entry is acknowledged above), unless a cancel ends it anyway.
        local reclaims = whole(own[1] or '0') and tonumber(own[1] or '0') + 1
        if own[2] == '1' then
          finish(base, id, job, 'cancelled', now, ttl_cancelled, 'reclaims', reclaims or own[1])
        elseif not reclaims then
          local reason = 'corrupt task data: reclaims ' .. shown(own[1]) .. ' is not a whole number'
          dead_letter(base, prio, dead_max, id, reason, whole(job.attempt) and job.attempt or 0,
            whole(job.max) and job.max or 1, job.user, data, now)
          finish(base, id, job, 'failed', now, ttl_failed, 'error', reason)
          count(base, now, 'failed:' .. prio, 1)
          dead = dead + 1
        elseif reclaims > max_reclaims then
          local reason = 'poison: its lease lapsed ' .. reclaims .. ' times (the worker died or hung each time)'
          dead_letter(base, prio, dead_max, id, reason, job.attempt, job.max, job.user, data, now)
          finish(base, id, job, 'failed', now, ttl_failed, 'reclaims', reclaims, 'error', reason)
          count(base, now, 'failed:' .. prio, 1)
          dead = dead + 1
        else
          requeue(base, id, job, prio, data, 'reclaims', reclaims)
          requeued = requeued + 1
        end
      elseif job.state == 'queued' and job.entry == entry then
        -- Delivered but never marked running: a claim that failed after its read (Redis keeps a
        -- script's writes up to its error). Put back at the tail, uncharged: it never ran.
        requeue(base, id, job, prio, data)
        requeued = requeued + 1
      end
    end
  end
end
for p = 1, #PRIORITIES do cursors[p] = cursors[p] or '0-0' end
return { requeued, dead, cursors }
