-- wake: a worker woken for jobs it cannot take (its slots filled after it blocked, or it is
-- stopping, or its claim filled up before the rest of what woke it) wakes another in its place,
-- one for each priority given (signal_workers).
-- KEYS[1] base
-- ARGV prio...
-- -> how many wakes were written (each wakes a waiting worker, if there is one)
-- @include common

for _, prio in ipairs(ARGV) do
  if not PRIORITY[prio] then return redis.error_reply('ERR unknown priority ' .. tostring(prio)) end
end
for _, prio in ipairs(ARGV) do signal_workers(KEYS[1], prio, 1, 'passed') end
return #ARGV
