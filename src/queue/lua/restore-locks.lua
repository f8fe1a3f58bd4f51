-- restore-locks: the ledger's active tasks get back the one-active-task-per-user lock Redis lost,
-- but only while their job is live here, checked in the same step (a job that ends meanwhile
-- must not leave a lock behind), and never over a lock that names another task. A key of another
-- type under the lock's name names no task: it is replaced. SET NX alone would keep it and leave
-- the live task unlocked, so the user's next enqueue would replace it and let a second task in.
-- A task whose key is not a hash is skipped (no lock); the others are still restored.
-- KEYS[1] base
-- ARGV (id, user)...
-- -> number of locks set
-- @include common

local base = KEYS[1]
local restored = 0
for a = 1, #ARGV, 2 do
  local id, user = ARGV[a], ARGV[a + 1]
  -- is_live: a task whose state cannot be read (its key of another type) is not live here and gets
  -- no lock; WRONGTYPE would fail the whole call and leave every other task of the batch without
  -- its lock.
  if user ~= '' and is_live(base, id) then
    local _, other_type = user_lock(base, user)
    if other_type then redis.call('DEL', user_key(base, user)) end
    if redis.call('SET', user_key(base, user), id, 'NX') then restored = restored + 1 end
  end
end
return restored
