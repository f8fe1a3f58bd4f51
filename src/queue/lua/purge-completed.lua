-- purge-completed: deletes the data of the given jobs that are completed (checked here, in the
-- same step: a job replaced by a new run of the same id is not completed, and stays).
-- KEYS[1] base
-- ARGV id...
-- -> number deleted
-- @include common

local base = KEYS[1]
local removed = 0
for a = 1, #ARGV do
  local key = job_key(base, ARGV[a])
  if redis.call('HGET', key, 'state') == 'completed' then
    redis.call('DEL', key)
    removed = removed + 1
  end
end
return removed
