-- complete: jobs finished by their owner (see complete-jobs for the rules), when no claim is
-- going out to carry them.
-- KEYS[1] base
-- ARGV group, ttl_seconds, (id, attempt, result)...
-- -> {'ok' | 'stale', ...} in the order given
-- @include common
-- @include complete-jobs

return complete_jobs(KEYS[1], ARGV[1], tonumber(ARGV[2]), now_ms(), ARGV, 3)
