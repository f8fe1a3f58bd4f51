-- Shared helpers. Every script gets the queue's key prefix (e.g. "rt:{caption}:") as KEYS[1];
-- the keys it derives all carry the same {hash tag}, so they live in KEYS[1]'s Cluster slot.

local PRIORITIES = { 'urgent', 'high', 'normal', 'low' }
local PRIORITY = { urgent = true, high = true, normal = true, low = true }

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function stream_key(base, prio) return base .. 's:' .. prio end
local function delayed_key(base, prio) return base .. 'd:' .. prio end
local function dead_key(base, prio) return base .. 'x:' .. prio end
local function job_key(base, id) return base .. 'j:' .. id end
local function user_key(base, user) return base .. 'u:' .. user end
local function signal_key(base, prio) return base .. 'signal:' .. prio end

-- Idle workers block in XREADGROUP ... NOACK COUNT 1 on each stream's wake group (the queue's
-- group name with ':wake'), not in a plain XREAD: Redis serves such a read only for an entry past
-- the group's last id, and gives each entry to one of them, so a new job wakes one worker, not
-- every idle one (each of which claimed and found nothing). The group is moved past entries that
-- need no wake: a claim's, once it read every stream dry, and an enqueue's that handed its own
-- job over.
local function wake_group(group) return group .. ':wake' end

-- Wakes up to n waiting workers that take `prio` through its signal stream, each of which claims
-- (a resume's backlog, or a wake passed on by a worker that cannot claim): each entry wakes one.
-- Kept short: every claim that comes back short moves the group past what is there.
local SIGNAL_KEEP = 64
local function signal_workers(base, prio, n, why)
  for _ = 1, math.min(n, SIGNAL_KEEP) do
    redis.call('XADD', signal_key(base, prio), 'MAXLEN', SIGNAL_KEEP, '*', 'wake', why)
  end
end

-- Where a stream's entries not yet delivered to `group` start, as XRANGE's start: past the
-- group's last delivered entry, or the whole stream before the group exists.
local function undelivered_from(key, group)
  local groups = redis.pcall('XINFO', 'GROUPS', key)
  if type(groups) ~= 'table' or groups.err then return '-' end
  for _, g in ipairs(groups) do
    local info = {}
    for n = 1, #g, 2 do info[g[n]] = g[n + 1] end
    if info['name'] == group then return '(' .. info['last-delivered-id'] end
  end
  return '-'
end

-- Moves a stream's wake group to `id` ('$': its last entry), making the group (and the stream)
-- when missing: a fresh or emptied Redis.
local function settle_wake(key, group, id)
  local moved = redis.pcall('XGROUP', 'SETID', key, group, id)
  if type(moved) == 'table' and moved.err then redis.call('XGROUP', 'CREATE', key, group, id, 'MKSTREAM') end
end

-- A function of one value, each value computed once: in Redis's Lua each call into C (type,
-- string.find, tonumber, string.format) costs hundreds of instructions or more, and the values
-- of a batch repeat. The results outlive a call when the scripts run as Redis Functions (their
-- helpers are built once, when the library loads): they start again once they hold as many
-- values as no batch needs.
local function remembered(compute)
  local known, count = {}, 0
  return function(value)
    local result = known[value]
    if result == nil then
      result = compute(value)
      -- value == value: a NaN (from damaged data) cannot be a key.
      if value ~= nil and value == value then
        if count >= 4096 then known, count = {}, 0 end
        known[value], count = result, count + 1
      end
    end
    return result
  end
end

-- A count as enqueue writes it, 1-15 digits (exact as a Lua number and as a Redis integer): its
-- number, else false. The claim judges five a job, and the jobs of a claim mostly share them.
local whole = remembered(function(value)
  return type(value) == 'string' and #value <= 15 and string.find(value, '^%d+$') ~= nil and tonumber(value)
end)

-- Numbers as text: Redis 7.0 turns a number handed to redis.call into text with
-- snprintf("%.17g"), and Lua's `..` with sprintf("%.14g"), thousands of instructions each, while
-- the numbers a claim or a completion passes repeat (a count, the minute, a bucket's expiry).
-- The same bytes as before: arg_text for a command's argument, key_text inside a name.
local arg_text = remembered(function(n) return string.format('%.17g', n) end)
local key_text = remembered(function(n) return string.format('%.14g', n) end)

-- A value for a reason: short, printable.
local function shown(value)
  return '"' .. (string.gsub(string.sub(value, 1, 40), '[^%w%p ]', '?')) .. '"'
end

-- Stream entry fields come as a flat array: i = task id, d = the job's data. A waiting or running
-- job's data lives in its entry, not in its hash: a hash with a value over 64 bytes loses Redis's
-- compact encoding and took three times the memory of the rest of the job.
local function entry_field(fields, name)
  if type(fields) ~= 'table' then return nil end
  for n = 1, #fields, 2 do
    if fields[n] == name then return fields[n + 1] end
  end
  return nil
end

local function entry_task_id(fields) return entry_field(fields, 'i') end

-- A job's data: from its stream entry, else from its hash (a delayed job keeps it there, and so did
-- every job enqueued before data moved to the entry).
local function job_data(base, id, prio, entry)
  if entry and entry ~= '' and PRIORITY[prio] then
    local found = redis.call('XRANGE', stream_key(base, prio), entry, entry)[1]
    local data = found and entry_field(found[2], 'd')
    if data then return data end
  end
  local data = redis.pcall('HGET', job_key(base, id), 'data')
  return type(data) == 'string' and data or ''
end

-- The task id a user's lock names, or nil; and whether a key of another type holds the lock's name.
-- pcall: such a key is corruption, not a lock (it names no task), and a GET failing on it with
-- WRONGTYPE would fail the caller each time, for that user for good. The name is the lock's: the
-- caller replaces such a key (or, releasing, deletes it).
local function user_lock(base, user)
  local held = redis.pcall('GET', user_key(base, user))
  if type(held) == 'table' then return nil, true end
  return held or nil, false
end

-- Frees the user's slot only if it still names this task: a newer task may hold it already.
-- A key of another type there cannot be a newer task's lock: it goes too, freeing the user.
local function release_user(base, user, id)
  if user and user ~= '' then
    local held, other_type = user_lock(base, user)
    if held == id or other_type then redis.call('DEL', user_key(base, user)) end
  end
end

-- Per-minute counters for "completed/failed in the last hour"; two hours of buckets are kept.
local function count(base, now, field, n)
  if n > 0 then
    local key = base .. 'm:' .. key_text(math.floor(now / 60000))
    -- The expiry goes on with a field's first count (so with the key's): not a call per batch.
    if redis.call('HINCRBY', key, field, arg_text(n)) == n then redis.call('EXPIRE', key, '7200') end
  end
end

local function ack_and_delete(base, prio, group, entry)
  if entry and entry ~= '' then
    local key = stream_key(base, prio)
    redis.call('XACK', key, group, entry)
    redis.call('XDEL', key, entry)
  end
end

-- An entry id's two numbers, or nil for one past 15 digits in either (not exact as a Lua number).
local function entry_id_parts(entry)
  local ms, seq = string.match(entry, '^(%d+)%-(%d+)$')
  if not ms or #ms > 15 or #seq > 15 then return nil end
  return tonumber(ms), tonumber(seq)
end

-- The entries not below the id (ms, seq), and those that are not ids.
local function entries_from(entries, ms, seq)
  local rest = {}
  for _, entry in ipairs(entries) do
    local m, s = entry_id_parts(entry)
    if not m or m > ms or (m == ms and s >= seq) then rest[#rest + 1] = entry end
  end
  return rest
end

-- The same for many entries of one stream (in slices, as unpack's arguments live on Lua's C
-- stack). XDEL finds each entry by walking its stream node from the start, some 7 % of Redis's
-- work in a drain; XTRIM MINID drops every entry below an id in one pass. Every entry below
-- the group's oldest pending one is done with: the group hands entries out in id order (one group
-- per stream, reads with '>'), so those were delivered, and, no longer pending, acknowledged,
-- which always goes with their deletion. So the trim drops these entries and nothing else live:
-- when it drops as many as were given, all of them went, and no id is parsed (in Lua, a cost
-- like the XDEL's). Otherwise those at or above the bound (completed ahead of an older running
-- job, or already gone) are deleted one by one: a long job keeps no later entry in the stream.
-- The bound is always Redis's own: with nothing pending (a quiet queue, one job a batch) the
-- entries are deleted one by one, as a bound taken from the ids the worker sent back could reach
-- past entries still waiting.
local function ack_and_delete_all(base, prio, group, entries)
  local key = stream_key(base, prio)
  for i = 1, #entries, 1000 do
    redis.call('XACK', key, group, unpack(entries, i, math.min(i + 999, #entries)))
  end
  local rest = entries
  -- pcall: with the stream or its group gone (XACK answers 0 then), nothing is trimmed.
  local pending = redis.pcall('XPENDING', key, group, '-', '+', '1')
  local oldest = not pending.err and pending[1] and pending[1][1]
  if oldest then
    if redis.call('XTRIM', key, 'MINID', oldest) == #entries then return end
    local ms, seq = entry_id_parts(oldest)
    if ms then rest = entries_from(entries, ms, seq) end
  end
  for i = 1, #rest, 1000 do
    redis.call('XDEL', key, unpack(rest, i, math.min(i + 999, #rest)))
  end
end

-- The dead-letter stream of a priority is self-contained (payload included) so a dead letter can
-- be redriven even after its job hash has expired. Trimmed approximately to dead_max entries.
local function dead_letter(base, prio, dead_max, id, reason, attempt, max, user, data, now)
  redis.call('XADD', dead_key(base, prio), 'MAXLEN', '~', dead_max, '*',
    'i', id or '', 'reason', reason, 'attempt', attempt or 0, 'max', max or 1,
    'user', user or '', 'data', data or '', 'at', now)
  count(base, now, 'dead:' .. prio, 1)
end

-- The live state of every queued, delayed or running job is one field of the queue's `live` hash
-- (field: the job's id), packed into one value, and its data is in its stream entry: a claim or a
-- batch of completions reads and writes all its jobs' states in one call each, where a hash per
-- job cost two calls per job in the claim and one in the completion (calls, not what they do,
-- were most of Redis's work per job). A live job has a hash of its own only for what is added
-- while it lives (a delayed job's data and due time, progress, an error of an earlier attempt, a
-- cancel request, a reclaim count); `hashed` says whether it may have one. An ended job's state
-- is written to its own hash (finish), which expires; a completed one keeps a record instead.
-- The value is MessagePack, twelve strings: state, attempt, hashed, entry, spent, max, created,
-- prio, user, meta, started, owner (the completion's fence first: it unpacks only those). cmsgpack
-- unpacks in one C call; a Lua pattern over a text value cost more per job than the calls the
-- live hash saves. It is written here, not with cmsgpack.pack, which makes a Lua string of every
-- value before it joins them: the heads are looked up, and the value is one concatenation.
local function live_key(base) return base .. 'live' end

local LIVE_STATE = { queued = true, delayed = true, running = true }

-- The MessagePack head of a string of n bytes (str8/16/32 past 31), made once per length (per
-- script run, or for as long as the library stays loaded: as many as the lengths of the fields).
local MP_HEAD = {}
local function mp_head(n)
  local head
  if n < 32 then
    head = string.char(0xa0 + n)
  elseif n < 256 then
    head = string.char(0xd9, n)
  elseif n < 65536 then
    head = string.char(0xda, math.floor(n / 256), n % 256)
  else
    head = string.char(0xdb, math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256, math.floor(n / 256) % 256,
      n % 256)
  end
  MP_HEAD[n] = head
  return head
end

-- The fields in their order, each a string.
local function pack_values(state, attempt, hashed, entry, spent, max, created, prio, user, meta, started, owner)
  return (MP_HEAD[#state] or mp_head(#state)) .. state .. (MP_HEAD[#attempt] or mp_head(#attempt)) .. attempt
    .. (MP_HEAD[#hashed] or mp_head(#hashed)) .. hashed .. (MP_HEAD[#entry] or mp_head(#entry)) .. entry
    .. (MP_HEAD[#spent] or mp_head(#spent)) .. spent .. (MP_HEAD[#max] or mp_head(#max)) .. max
    .. (MP_HEAD[#created] or mp_head(#created)) .. created .. (MP_HEAD[#prio] or mp_head(#prio)) .. prio
    .. (MP_HEAD[#user] or mp_head(#user)) .. user .. (MP_HEAD[#meta] or mp_head(#meta)) .. meta
    .. (MP_HEAD[#started] or mp_head(#started)) .. started .. (MP_HEAD[#owner] or mp_head(#owner)) .. owner
end

local function pack_live(job)
  return pack_values(job.state, job.attempt, job.hashed and '1' or '0', job.entry, job.spent, job.max, job.created,
    job.prio, job.user, job.meta, job.started, job.owner)
end

-- The job unpacked values describe, or nil unless they are twelve strings with a live state
-- (damaged or forged: unpack reads any bytes as something, nils and tables included).
local function live_of(ok, ...)
  if not ok or select('#', ...) ~= 12 then return nil end
  for i = 1, 12 do
    if type((select(i, ...))) ~= 'string' then return nil end
  end
  local state, attempt, hashed, entry, spent, max, created, prio, user, meta, started, owner = ...
  if not LIVE_STATE[state] then return nil end
  return {
    state = state, attempt = attempt, spent = spent, max = max, created = created, prio = prio,
    entry = entry, started = started, hashed = hashed ~= '0', live = true, user = user, meta = meta,
    owner = owner,
  }
end

local function unpack_live(value) return live_of(pcall(cmsgpack.unpack, value)) end

local function save_live(base, id, job) redis.call('HSET', live_key(base), id, pack_live(job)) end

-- The fields an ended job's hash keeps (and a live one's kept before the live hash existed).
local HASH_STATE = { 'state', 'attempt', 'spent', 'max', 'created', 'prio', 'entry', 'started', 'user', 'meta',
  'owner' }

-- A job read from its hash, or nil if it has none.
local function job_from_hash(h)
  if not h[1] then return nil end
  return {
    state = h[1], attempt = h[2] or '0', spent = h[3] or '0', max = h[4] or '1', created = h[5] or '0',
    prio = h[6] or '', entry = h[7] or '', started = h[8] or '', user = h[9] or '', meta = h[10] or '',
    owner = h[11] or '', hashed = true, live = false,
  }
end

-- A job: its live state, else its own hash (an ended job, or a live one written before the live
-- hash: every reader takes both, and the first transition moves it to the live hash). nil when
-- there is neither; false and why for one that cannot be read (a live value that does not parse,
-- a key of another type under the job's name).
local function load_job(base, id)
  local value = redis.call('HGET', live_key(base), id)
  if value then
    local job = unpack_live(value)
    if not job then return false, 'its live state ' .. shown(value) .. ' does not parse', true end
    return job
  end
  local h = redis.pcall('HMGET', job_key(base, id), unpack(HASH_STATE))
  if h.err then return false, 'its task key is not a hash' end
  return job_from_hash(h)
end

-- Whether a job is queued, delayed or running (for the user lock's checks): a job that cannot be
-- read is not.
local function is_live(base, id)
  if redis.call('HEXISTS', live_key(base), id) == 1 then return true end
  local state = redis.pcall('HGET', job_key(base, id), 'state')
  return LIVE_STATE[state] == true
end

-- Fields added to a live job's own hash; the job is marked as having one.
local function add_to_hash(base, id, job, ...)
  redis.call('HSET', job_key(base, id), ...)
  job.hashed = true
end

-- Moves a job to a terminal state: out of the live hash, its state into its own hash, which
-- expires after ttl seconds.
local function finish(base, id, job, state, now, ttl, ...)
  local key = job_key(base, id)
  if job.live then redis.call('HDEL', live_key(base), id) end
  local fields = { 'state', state, 'ended', now, 'entry', '', 'owner', '', 'attempt', job.attempt, 'spent', job.spent,
    'max', job.max, 'created', job.created, 'prio', job.prio }
  if job.user ~= '' then fields[#fields + 1] = 'user'; fields[#fields + 1] = job.user end
  if job.meta ~= '' then fields[#fields + 1] = 'meta'; fields[#fields + 1] = job.meta end
  if job.started ~= '' then fields[#fields + 1] = 'started'; fields[#fields + 1] = job.started end
  for i = 1, select('#', ...) do fields[#fields + 1] = select(i, ...) end
  -- pcall: a key of another type under the job's name is left for a person to look at; the job
  -- still ends (out of the live hash, its user's slot freed), and the ledger keeps its end.
  if type(redis.pcall('HSET', key, unpack(fields))) == 'number' then
    redis.call('HDEL', key, 'due', 'data')
    if tonumber(ttl) > 0 then redis.call('EXPIRE', key, ttl) end
  end
  release_user(base, job.user, id)
end

-- Ends a task whose live state does not parse: nothing in it can be trusted (its user and
-- counters included), so it leaves the live hash (where it would pass for live, holding its
-- user's slot for good) and its own hash says failed, why, and when. Its attempt is written
-- empty, not left out (read as 0): no attempt number is known to be above every one a stale
-- worker may still answer for, so redrive refuses it as corrupt. pcall: its own key may be
-- damaged too.
local function fail_unreadable(base, id, now, ttl, reason)
  redis.call('HDEL', live_key(base), id)
  local key = job_key(base, id)
  local written = redis.pcall('HSET', key, 'state', 'failed', 'attempt', '', 'error', reason, 'ended', now)
  if type(written) == 'number' and tonumber(ttl) > 0 then
    redis.call('EXPIRE', key, ttl)
  end
end

-- Puts a job (back) at the tail of its priority's stream, ready to be claimed, its data with it.
-- Extra fields (name, value...) go to its own hash.
local function requeue(base, id, job, prio, data, ...)
  local entry = redis.call('XADD', stream_key(base, prio), '*', 'i', id, 'd', data or '')
  if select('#', ...) > 0 then add_to_hash(base, id, job, ...) end
  job.state, job.entry, job.owner, job.prio = 'queued', entry, '', prio
  save_live(base, id, job)
  return entry
end

-- A completed job keeps no hash of its own: its record is a field of the hash of the retention
-- period it ended in (a "bucket"), so a batch of completions writes one HSET and one DEL in all
-- instead of a write and an expiry per job. `done` lists the buckets by the moment they expire:
-- a bucket spans ttl seconds and expires ttl seconds after its span ends, so a record stays for
-- ttl to twice ttl. With ttl 0 (kept until purged) there is one bucket that never expires.
-- Readers need no ttl: they look in every bucket listed, newest first (an expired one is just
-- absent).
local function done_index(base) return base .. 'done' end

-- A record: attempt, priority, ended (ms), spent, max, created (ms), and the lengths in bytes of
-- the user and of the progress history, each with one space after it (none of them holds a
-- space); then the user, the history (the hash's `steps`, JSON) and the result, back to back.
-- (An empty user or history is written '0' without formatting a number: that is a printf.)
local function done_record_of(attempt, prio, ended, spent, max, created, user, steps, result)
  return attempt .. ' ' .. prio .. ' ' .. ended .. ' ' .. spent .. ' ' .. max .. ' ' .. created .. ' '
    .. (user == '' and '0' or #user) .. ' ' .. (steps == '' and '0' or #steps) .. ' ' .. user .. steps .. result
end

-- A value read from a hash, for a record's head: a damaged one (with a space) is left out.
local function spaceless(value, default)
  if not value or string.find(value, ' ', 1, true) then return default end
  return value
end

-- Writes records, given flat as (id, record)...
local function keep_done_records(base, now, ttl, records)
  if #records == 0 then return end
  local span = ttl * 1000
  local bucket, expires = base .. 'done:0', '+inf'
  if span > 0 then
    local g = math.floor(now / span)
    bucket = base .. 'done:' .. key_text(ttl) .. ':' .. key_text(g)
    expires = arg_text((g + 2) * span)
  end
  local index = done_index(base)
  local fresh = redis.call('ZADD', index, 'NX', expires, bucket) == 1
  for i = 1, #records, 1000 do
    redis.call('HSET', bucket, unpack(records, i, math.min(i + 999, #records)))
  end
  -- Every time, not only when the index is new: a bucket emptied meanwhile (its last record
  -- replaced by a new run) is gone, and this HSET made it again.
  if span > 0 then redis.call('PEXPIREAT', bucket, expires) end
  if fresh then redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. now) end
end

-- The completed record of a job, or nil. Newest bucket first: the id may have completed again.
local function done_record(base, id)
  local buckets = redis.call('ZRANGE', done_index(base), 0, -1)
  for i = #buckets, 1, -1 do
    local found = redis.call('HGET', buckets[i], id)
    if found then return found end
  end
  return nil
end

-- Forgets an id's completed records: a new run of it replaces them, so that no reader takes an
-- old run's record for the new one's once the new one's hash is gone.
local function forget_done_records(base, id)
  for _, bucket in ipairs(redis.call('ZRANGE', done_index(base), 0, -1)) do redis.call('HDEL', bucket, id) end
end
