-- restore-locks: the ledger's active tasks get back the one-active-task-per-user lock Redis lost,
-- but only while their job is live here, checked in the same step (a job that ends meanwhile
-- must not leave a lock behind), and never over a lock that names another task.
-- KEYS[1] base
-- ARGV (id, user)...
-- -> number of locks set
-- @include common

local base = KEYS[1]
local restored = 0
for a = 1, #ARGV, 2 do
  local id, user = ARGV[a], ARGV[a + 1]
  local state = redis.call('HGET', job_key(base, id), 'state')
  if user ~= '' and (state == 'queued' or state == 'delayed' or state == 'running') then
    if redis.call('SET', user_key(base, user), id, 'NX') then restored = restored + 1 end
  end
end
return restored
