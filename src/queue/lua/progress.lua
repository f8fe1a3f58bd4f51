-- progress: the owner of a running attempt records how far it got; it is kept on the job hash
-- (for status reads and reconnects, with the last 30 steps across attempts for the dashboard's
-- history) and published on the events channel. A stale attempt's
-- progress is ignored, like everything else it says.
-- KEYS[1] base
-- ARGV id, attempt, percent, step, details_json
-- -> 1 recorded | 0 stale
-- @include common

local base, id, attempt = KEYS[1], ARGV[1], ARGV[2]
local key = job_key(base, id)
local job = load_job(base, id)
if not job or job.state ~= 'running' or job.attempt ~= attempt then return 0 end
local steps = redis.call('HGET', key, 'steps')
steps = steps and cjson.decode(steps) or {}
steps[#steps + 1] = { at = now_ms(), attempt = tonumber(attempt), percent = tonumber(ARGV[3]), step = ARGV[4] }
while #steps > 30 do table.remove(steps, 1) end
local hashed = job.hashed
add_to_hash(base, id, job, 'progress', ARGV[3], 'step', ARGV[4], 'steps', cjson.encode(steps))
if not hashed then save_live(base, id, job) end
redis.call('PUBLISH', base .. 'events', cjson.encode({
  type = 'progress', id = id, attempt = tonumber(attempt), percent = tonumber(ARGV[3]), step = ARGV[4],
  details = cjson.decode(ARGV[5]),
}))
return 1
