-- claim: up to `want` jobs for one consumer, strictly by priority: the first stream given is
-- drained before the next is read; paused priorities are skipped. Each claimed job's attempt
-- counter goes up by one: that number is the fencing token of every later transition.
-- Entries that name no task, or a task whose data is gone, are dead-lettered with a reason;
-- entries left behind by a cancel or a requeue are dropped. Neither stops the claim.
-- When fewer than `want` jobs were found, the newest entry id of each stream read is returned,
-- with the signal stream's, so the caller can block (XREAD) for anything newer without missing
-- an entry added meanwhile.
-- KEYS[1] base
-- ARGV group, consumer, want, dead_max, prio...
-- -> { {id, attempt, prio, max, data, user, created, run_attempt, ...}, {prio, cursor, ...} }
-- @include common

local base, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local want, dead_max = tonumber(ARGV[3]), ARGV[4]
local now = now_ms()

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

local jobs, cursors, got = {}, {}, 0
for a = 5, #ARGV do
  local prio = ARGV[a]
  if got >= want then break end
  if not paused[prio] then
    local key = stream_key(base, prio)
    local exhausted = false
    while got < want and not exhausted do
      local entries = read_new(key, want - got)
      exhausted = #entries < want - got
      for _, e in ipairs(entries) do
        local entry, fields = e[1], e[2]
        local id = entry_task_id(fields)
        local job = id and redis.call('HMGET', job_key(base, id), 'state', 'entry', 'attempt', 'max', 'data',
          'user', 'created', 'spent')
        if not id then
          dead_letter(base, prio, dead_max, '', 'corrupt stream entry ' .. entry .. ': no task id', 0, 1, '',
            cjson.encode(fields or {}), now)
          ack_and_delete(base, prio, group, entry)
        elseif not job[1] then
          dead_letter(base, prio, dead_max, id, 'orphan stream entry ' .. entry .. ': the task data is gone', 0,
            1, '', '', now)
          ack_and_delete(base, prio, group, entry)
        elseif job[1] ~= 'queued' or job[2] ~= entry then
          ack_and_delete(base, prio, group, entry)
        else
          local attempt = tonumber(job[3] or '0') + 1
          redis.call('HSET', job_key(base, id), 'state', 'running', 'attempt', attempt, 'owner', consumer,
            'started', now)
          got = got + 1
          jobs[#jobs + 1] = id
          jobs[#jobs + 1] = attempt
          jobs[#jobs + 1] = prio
          jobs[#jobs + 1] = job[4] or '1'
          jobs[#jobs + 1] = job[5] or ''
          jobs[#jobs + 1] = job[6] or ''
          jobs[#jobs + 1] = job[7] or '0'
          jobs[#jobs + 1] = attempt - tonumber(job[8] or '0')
        end
      end
    end
    if exhausted then
      local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
      cursors[#cursors + 1] = prio
      cursors[#cursors + 1] = (last[1] and last[1][1]) or '0-0'
    end
  end
end
if got < want then
  local tip = redis.call('XREVRANGE', base .. 'signal', '+', '-', 'COUNT', 1)
  cursors[#cursors + 1] = 'signal'
  cursors[#cursors + 1] = (tip[1] and tip[1][1]) or '0-0'
end
return { jobs, cursors }
