-- purge-completed: deletes the data of completed jobs. With records = 1, every completed record
-- (complete-jobs keeps them in buckets), and the index of the buckets with them, in the same step
-- so no completion adds to a bucket between its count and its deletion. Then the given job
-- hashes that say completed (jobs completed before records moved out of the hashes; a job
-- replaced by a new run of the same id is not completed, and stays).
-- KEYS[1] base
-- ARGV records (1|0), id...
-- -> number deleted
-- It only reads and deletes, so it runs when Redis is at maxmemory, to free it (as a function,
-- Redis would otherwise refuse it whole then).
-- @flags allow-oom
-- @include common

local base = KEYS[1]
local removed = 0
if ARGV[1] == '1' then
  local index = done_index(base)
  for _, bucket in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    removed = removed + redis.call('HLEN', bucket)
    redis.call('UNLINK', bucket)
  end
  redis.call('DEL', index)
end
for a = 2, #ARGV do
  local key = job_key(base, ARGV[a])
  if redis.call('HGET', key, 'state') == 'completed' then
    redis.call('DEL', key)
    removed = removed + 1
  end
end
return removed
