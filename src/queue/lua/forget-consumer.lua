-- forget-consumer: removes a consumer from a priority stream's group if it holds no pending
-- entry, checked and done in one step. XGROUP DELCONSUMER drops a consumer's pending entries
-- without acknowledging them; an entry that left the pending list so would be seen by no
-- reclaimer, and would be trimmed by the next completion (which drops every entry below the
-- oldest pending one). A claim by the consumer between a separate check and the deletion did
-- exactly that to a running job.
-- KEYS[1] base
-- ARGV group, prio, consumer
-- -> 1 if removed, 0 if it holds pending entries (or the stream or its group is gone)
-- @include common

local base, group, prio, consumer = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local key = stream_key(base, prio)
local pending = redis.pcall('XPENDING', key, group, '-', '+', 1, consumer)
if pending.err or pending[1] then return 0 end
-- DELCONSUMER answers 0 for a consumer that is not there as for an idle one; CREATECONSUMER
-- tells them apart (1: it was not there), so two janitors at once count a consumer once.
local absent = redis.call('XGROUP', 'CREATECONSUMER', key, group, consumer) == 1
redis.call('XGROUP', 'DELCONSUMER', key, group, consumer)
return absent and 0 or 1
