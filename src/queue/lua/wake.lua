-- wake: a worker woken for a job it cannot take (its slots filled after it blocked, or it is
-- stopping) wakes another in its place (signal_workers).
-- KEYS[1] base
-- -> 1
-- @include common

signal_workers(KEYS[1], 1, 'passed')
return 1
