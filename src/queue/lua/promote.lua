-- promote: delayed jobs whose time has come move to the tail of their priority's stream.
-- Ids in the delayed set whose job is no longer delayed (cancelled, expired) are dropped. A job
-- whose live state does not parse is dead-lettered and failed (it would otherwise stay live,
-- holding its user's slot, with nothing left to move it).
-- KEYS[1] base
-- ARGV limit (per priority), dead_max, ttl_failed
-- -> {moved, next_due_ms or -1}
-- @include common

local base, limit, dead_max, ttl_failed = KEYS[1], tonumber(ARGV[1]), ARGV[2] or '10000', ARGV[3] or '604800'
local now = now_ms()
local moved, next_due = 0, -1
for _, prio in ipairs(PRIORITIES) do
  local dkey = delayed_key(base, prio)
  local due = redis.call('ZRANGEBYSCORE', dkey, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    local job, unreadable, in_live = load_job(base, id)
    if job == false and in_live then
      local reason = 'corrupt task data: ' .. unreadable
      local data = redis.pcall('HGET', job_key(base, id), 'data')
      dead_letter(base, prio, dead_max, id, reason, 0, 1, '', type(data) == 'string' and data or '', now)
      fail_unreadable(base, id, now, ttl_failed, reason)
      count(base, now, 'failed:' .. prio, 1)
    elseif job and job.state == 'delayed' then
      local data = redis.call('HGET', job_key(base, id), 'data')
      requeue(base, id, job, prio, data)
      redis.call('HDEL', job_key(base, id), 'due', 'data')
      moved = moved + 1
    end
    redis.call('ZREM', dkey, id)
  end
  local head = redis.call('ZRANGE', dkey, 0, 0, 'WITHSCORES')
  if head[2] then
    local at = tonumber(head[2])
    if next_due < 0 or at < next_due then next_due = at end
  end
end
return { moved, next_due }
