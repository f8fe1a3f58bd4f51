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
for a = 3, #ARGV, 2 do
  local id, attempt = ARGV[a], ARGV[a + 1]
  local job = redis.call('HMGET', job_key(base, id), 'state', 'attempt', 'owner', 'prio', 'entry', 'cancel')
  if job[1] == 'running' and job[2] == attempt and job[3] == consumer then
    redis.call('XCLAIM', stream_key(base, job[4]), group, consumer, 0, job[5], 'JUSTID')
    out[#out + 1] = (job[6] == '1') and 'cancel' or 'ok'
  else
    out[#out + 1] = 'lost'
  end
end
return out
