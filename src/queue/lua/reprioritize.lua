-- reprioritize: a waiting job moves to another priority's stream (a delayed one to its delayed
-- set, keeping its due time). A running or ended job is left as it is and its state answered.
-- KEYS[1] base
-- ARGV id, new_priority
-- -> {'ok'} | {'state', state} | {'missing'}
-- @include common

local base, id, to = KEYS[1], ARGV[1], ARGV[2]
if not PRIORITY[to] then return redis.error_reply('ERR unknown priority ' .. tostring(to)) end
local key = job_key(base, id)
local job, unreadable = load_job(base, id)
if job == false then return redis.error_reply('ERR task ' .. id .. ' cannot be read: ' .. unreadable) end
if not job then return done_record(base, id) and { 'state', 'completed' } or { 'missing' } end
local state, from = job.state, job.prio
if state == 'queued' then
  local data = job_data(base, id, from, job.entry)
  if job.entry ~= '' then redis.call('XDEL', stream_key(base, from), job.entry) end
  requeue(base, id, job, to, data)
  redis.call('HDEL', key, 'data')
  return { 'ok' }
elseif state == 'delayed' then
  redis.call('ZREM', delayed_key(base, from), id)
  redis.call('ZADD', delayed_key(base, to), tonumber(redis.call('HGET', key, 'due') or '0'), id)
  job.prio = to
  save_live(base, id, job)
  return { 'ok' }
end
return { 'state', state }
