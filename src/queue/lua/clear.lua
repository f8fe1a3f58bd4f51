-- clear: waiting jobs of one priority (never delivered: newer than the group's last-delivered id)
-- end as cancelled with the given reason. Running and delayed jobs are left alone. Works in
-- batches of `limit` stream entries; the caller repeats while the batch was full.
-- KEYS[1] base
-- ARGV group, prio, limit, reason, ttl_cancelled
-- -> {entries read, {id1, attempt1, id2, attempt2, ...}}: the jobs cleared
-- @include common

local base, group, prio, limit, reason, ttl = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
if not PRIORITY[prio] then return redis.error_reply('ERR unknown priority ' .. tostring(prio)) end
local key = stream_key(base, prio)
local from = undelivered_from(key, group)
local now = now_ms()
local cleared = {}
local entries = redis.call('XRANGE', key, from, '+', 'COUNT', limit)
for _, e in ipairs(entries) do
  local entry = e[1]
  local id = entry_task_id(e[2])
  redis.call('XDEL', key, entry)
  if id then
    local job, unreadable, in_live = load_job(base, id)
    if job == false and in_live then
      -- Its entry is gone now: failed, or it would stay live with nothing left to run or end it.
      fail_unreadable(base, id, now, ttl, 'corrupt task data: ' .. unreadable)
    elseif job and job.state == 'queued' and job.entry == entry then
      finish(base, id, job, 'cancelled', now, ttl, 'error', reason)
      cleared[#cleared + 1] = id
      cleared[#cleared + 1] = job.attempt
    end
  end
end
return {#entries, cleared}
