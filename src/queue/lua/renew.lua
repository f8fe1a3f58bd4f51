-- renew: the owner of running jobs extends their leases (XCLAIM JUSTID resets the idle time the
-- reclaimer looks at). A job whose attempt or owner changed was lost to the reclaimer: the owner
-- must abort it. The answer also carries a pending cancel, so a missed cancel message is caught
-- within one renewal period.
-- KEYS[1] base
-- ARGV group, consumer, (id, attempt)...
-- -> {'ok' | 'lost' | 'cancel', ...} in the order given
-- @include common

local base, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local out = {}
local ids = {}
for a = 3, #ARGV, 2 do ids[#ids + 1] = ARGV[a] end
if #ids == 0 then return out end
-- Every job's live state in one call (a worker renews all its running jobs at once).
local values = {}
for i = 1, #ids, 1000 do
  local last = math.min(i + 999, #ids)
  local found = redis.call('HMGET', live_key(base), unpack(ids, i, last))
  for k = i, last do values[k] = found[k - i + 1] or false end
end
for n = 1, #ids do
  local id, attempt = ids[n], ARGV[2 + n * 2]
  local job
  if values[n] then job = unpack_live(values[n]) else job = load_job(base, id) end
  if job and job.state == 'running' and job.attempt == attempt and job.owner == consumer then
    redis.call('XCLAIM', stream_key(base, job.prio), group, consumer, 0, job.entry, 'JUSTID')
    local cancel = redis.pcall('HGET', job_key(base, id), 'cancel')
    out[#out + 1] = (cancel == '1') and 'cancel' or 'ok'
  else
    out[#out + 1] = 'lost'
  end
end
return out
