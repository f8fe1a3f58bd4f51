-- heartbeat: a worker process says it is alive. Its registration expires unless renewed; one
-- zset orders workers by their last beat (Redis time), another by when their registration lapses
-- (the beat plus the worker's own ttl), so a lapsed one is easy to find whatever its interval.
-- KEYS[1] base
-- ARGV worker id, ttl_ms, (field, value)...
-- -> the beat's time (ms)
-- @include common

local base, id, ttl = KEYS[1], ARGV[1], ARGV[2]
local now = now_ms()
local key = base .. 'w:' .. id
local fields = { 'beat', now }
for a = 3, #ARGV do fields[#fields + 1] = ARGV[a] end
redis.call('HSET', key, unpack(fields))
redis.call('PEXPIRE', key, ttl)
redis.call('ZADD', base .. 'workers', now, id)
redis.call('ZADD', base .. 'workers:lapse', now + tonumber(ttl), id)
return now
