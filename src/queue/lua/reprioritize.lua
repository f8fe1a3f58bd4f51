-- reprioritize: a waiting job moves to another priority's stream (a delayed one to its delayed
-- set, keeping its due time). A running or ended job is left as it is and its state answered.
-- KEYS[1] base
-- ARGV id, new_priority
-- -> {'ok'} | {'state', state} | {'missing'}
-- @include common

local base, id, to = KEYS[1], ARGV[1], ARGV[2]
if not PRIORITY[to] then return redis.error_reply('ERR unknown priority ' .. tostring(to)) end
local key = job_key(base, id)
local job = redis.call('HMGET', key, 'state', 'prio', 'entry', 'due')
local state, from = job[1], job[2]
if not state then return done_record(base, id) and { 'state', 'completed' } or { 'missing' } end
if state == 'queued' then
  local data = job_data(base, id, from, job[3])
  if job[3] and job[3] ~= '' then redis.call('XDEL', stream_key(base, from), job[3]) end
  redis.call('HSET', key, 'prio', to)
  requeue(base, id, to, data)
  redis.call('HDEL', key, 'data')
  return { 'ok' }
elseif state == 'delayed' then
  redis.call('ZREM', delayed_key(base, from), id)
  redis.call('ZADD', delayed_key(base, to), tonumber(job[4] or '0'), id)
  redis.call('HSET', key, 'prio', to)
  return { 'ok' }
end
return { 'state', state }
