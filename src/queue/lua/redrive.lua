-- redrive: dead letters of one priority go back to their stream as fresh jobs with a new run of
-- max attempts ('spent' remembers the attempts of earlier runs). The attempt counter keeps
-- counting up, so no stale worker of an old attempt can touch the new one. The one-active-task-
-- per-user rule holds here too.
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
    local state = id ~= '' and redis.call('HGET', key, 'state')
    local active = user ~= '' and redis.call('GET', user_key(base, user))
    local active_state = active and active ~= id and redis.call('HGET', job_key(base, active), 'state')
    if id == '' or (f['data'] or '') == '' then
      out[#out + 1] = 'corrupt'
    elseif active_state == 'queued' or active_state == 'delayed' or active_state == 'running' then
      out[#out + 1] = 'active:' .. active
    elseif state == 'queued' or state == 'delayed' or state == 'running' then
      -- Already back in play (redriven twice): drop the dead letter only.
      redis.call('XDEL', dkey, ARGV[a])
      out[#out + 1] = 'ok'
    else
      local attempt = tonumber(redis.call('HGET', key, 'attempt') or f['attempt'] or '0')
      redis.call('DEL', key)
      redis.call('HSET', key, 'data', f['data'], 'user', user, 'prio', prio, 'attempt', attempt,
        'spent', attempt, 'max', f['max'] or '1', 'created', now)
      requeue(base, id, prio)
      if user ~= '' then redis.call('SET', user_key(base, user), id) end
      redis.call('XDEL', dkey, ARGV[a])
      out[#out + 1] = 'ok'
    end
  end
end
return out
