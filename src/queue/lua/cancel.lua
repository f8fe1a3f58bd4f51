-- cancel: a waiting or delayed job is removed at once; a running one is flagged and its owner is
-- told on the events channel (and again by its next lease renewal) so it can abort the run.
-- With waiting_only, a running job is left alone ({'running'}): for moving waiting work elsewhere.
-- KEYS[1] base
-- ARGV id, reason, ttl_cancelled, waiting_only
-- -> {'cancelled'} | {'flagged', attempt} | {'running'} | {'ended', state} | {'missing'}
-- @include common

local base, id, reason, ttl = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local key = job_key(base, id)
local job = redis.call('HMGET', key, 'state', 'prio', 'entry', 'user', 'attempt')
local state, prio = job[1], job[2]
if not state then return done_record(base, id) and { 'ended', 'completed' } or { 'missing' } end
local now = now_ms()
if state == 'queued' then
  -- Never delivered, so not pending: deleting the entry is enough.
  if job[3] and job[3] ~= '' then redis.call('XDEL', stream_key(base, prio), job[3]) end
  finish(base, id, job[4], 'cancelled', now, ttl, 'error', reason)
  return { 'cancelled' }
elseif state == 'delayed' then
  redis.call('ZREM', delayed_key(base, prio), id)
  finish(base, id, job[4], 'cancelled', now, ttl, 'error', reason)
  return { 'cancelled' }
elseif state == 'running' then
  if ARGV[4] == '1' then return { 'running' } end
  redis.call('HSET', key, 'cancel', '1', 'error', reason)
  redis.call('PUBLISH', base .. 'events', cjson.encode({ type = 'cancel', id = id, attempt = tonumber(job[5]) }))
  return { 'flagged', job[5] }
end
return { 'ended', state }
