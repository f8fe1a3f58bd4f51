-- alert-lock: takes or keeps the right to evaluate the queue-wide alert rules, so one process
-- evaluates them however many run. The holder renews it every round; a holder that stops
-- renewing loses it after ttl_ms, and the next process to ask takes it.
-- KEYS[1] base
-- ARGV owner, ttl_ms
-- -> 1 if `owner` holds it now, else 0

local key = KEYS[1] .. 'alerting:lock'
local owner, ttl = ARGV[1], ARGV[2]
if redis.call('GET', key) == owner then
  redis.call('PEXPIRE', key, ttl)
  return 1
end
if redis.call('SET', key, owner, 'NX', 'PX', ttl) then return 1 end
return 0
