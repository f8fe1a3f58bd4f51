-- cancel: a waiting or delayed job is removed at once; a running one is flagged and its owner is
-- told on the events channel (and again by its next lease renewal) so it can abort the run.
-- With waiting_only, a running job is left alone ({'running'}): for moving waiting work elsewhere.
-- KEYS[1] base
-- ARGV id, reason, ttl_cancelled, waiting_only
-- -> {'cancelled'} | {'flagged', attempt} | {'running'} | {'ended', state} | {'missing'}
-- @include common

local base, id, reason, ttl = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local job, unreadable = load_job(base, id)
if job == false then return redis.error_reply('ERR task ' .. id .. ' cannot be read: ' .. unreadable) end
if not job then return done_record(base, id) and { 'ended', 'completed' } or { 'missing' } end
local state, prio = job.state, job.prio
local now = now_ms()
if state == 'queued' then
  -- Never delivered, so not pending: deleting the entry is enough.
  if job.entry ~= '' then redis.call('XDEL', stream_key(base, prio), job.entry) end
  finish(base, id, job, 'cancelled', now, ttl, 'error', reason)
  return { 'cancelled' }
elseif state == 'delayed' then
  redis.call('ZREM', delayed_key(base, prio), id)
  finish(base, id, job, 'cancelled', now, ttl, 'error', reason)
  return { 'cancelled' }
elseif state == 'running' then
  if ARGV[4] == '1' then return { 'running' } end
  local hashed = job.hashed
  add_to_hash(base, id, job, 'cancel', '1', 'error', reason)
  if not hashed then save_live(base, id, job) end
  redis.call('PUBLISH', base .. 'events', cjson.encode({ type = 'cancel', id = id, attempt = tonumber(job.attempt) }))
  return { 'flagged', job.attempt }
end
return { 'ended', state }
