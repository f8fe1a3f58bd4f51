/**
 * What the per-job record costs a main-thread drain, measured rather than estimated: our engine
 * `Worker`, unchanged, drains N no-op jobs from a stand-in queue that keeps no job record at all
 * (the streams only: `XREADGROUP` in strict priority order, `XACK` + `XDEL` of the completions
 * riding in the next claim), then with the record's Redis calls added back one step at a time,
 * until it does what `claim.lua` and `complete-jobs.lua` do per job; then two other layouts of
 * the same work (steps 5 and 6, below). Ours (the real `Queue`) and
 * BullMQ drain the same jobs in the same rounds, on the same private Redis, the order reversed
 * every other round. Not a test, and not part of `npm run bench`: it backs the analysis in
 * bench/PERFORMANCE.md ("Where the time goes").
 *
 *   npm run bench:record-cost                     # 30,000 jobs, 3 rounds, c16 and c100
 *   npm run bench:record-cost -- --jobs 10000 --rounds 1 --concurrency 16
 */
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { Effect } from "effect";
import { PRIORITIES, type Priority } from "../src/domain/priority.js";
import type { Claim, ClaimedJob, CompleteOutcome, Completion, Queue } from "../src/queue/queue.js";
import { Worker } from "../src/queue/worker.js";
import { connectRedis, type RedisClient } from "../src/redis/connection.js";
import { median, payload, waitFor } from "./harness.js";
import { formatNumber } from "./report.js";
import { Bullmq } from "./systems/bullmq.js";
import { runStandalone, wholeNumbers } from "./standalone.js";
import { Ratatoskr } from "./systems/ratatoskr.js";

/**
 * Steps 1-4 each add their calls to every step before them. Step 5 is step 4 with the completion
 * bench/PERFORMANCE.md once proposed in place of step 3's: no call per job. Step 6 keeps every read
 * and write of step 4 (the claim's fence and running state, the completion's fence and record)
 * but makes each once per batch: a job's live state is a field of one hash instead of a hash of
 * its own, so one `HMGET` and one `HSET` serve all of a claim's jobs, and one `HMGET`, one `HSET`
 * and one `HDEL` a completion batch's.
 */
const STEPS = [
  "streams only (no job record)",
  "+ claim reads the job hash (HMGET, 9 fields)",
  "+ claim writes it (HSET, 5 fields)",
  "+ completion reads, writes and expires it (HMGET, HSET, EXPIRE)",
  "+ 9 values per claimed job in the reply (claim.lua sends 10 since it returns the entry)",
  "step 4, the completion in bulk: XACK's count as the fence, the batch's results in one HSET, their hashes in one DEL",
  "every fence of step 4 kept, each call made once per batch: the jobs' live state in one hash (a field per job)",
] as const;
const BULK = 5;
const SHARED = 6;

/**
 * KEYS[1] prefix; ARGV group, consumer, want, step, n, then n completed job ids
 * (`<priority>/<entry id>`). -> { {id, data, [7 more values from step 4]}..., n × 'ok', short }
 * In step 5 a completion whose entry is no longer pending is an error: a drain has none, and
 * the proposal would check such a batch job by job against the hashes. A job hash (in step 6, a
 * live state) not in the state its step expects is an error too (the claim and the completion
 * read the real records).
 */
const CLAIM = `
local base, group, consumer, want, step = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local entries, done = {}, {}
for a = 6, 5 + n do
  local id = ARGV[a]
  local slash = string.find(id, '/', 1, true)
  local prio = string.sub(id, 1, slash - 1)
  entries[prio] = entries[prio] or {}
  table.insert(entries[prio], string.sub(id, slash + 1))
  if step == 3 or step == 4 then
    local key = base .. 'j:' .. id
    local job = redis.call('HMGET', key, 'state', 'attempt', 'prio', 'entry', 'user', 'due', 'cancel')
    if job[1] ~= 'running' then return redis.error_reply('ERR completing a job that is not running') end
    redis.call('HSET', key, 'state', 'completed', 'ended', 1, 'entry', '', 'owner', '', 'result', '')
    redis.call('EXPIRE', key, 86400)
  end
  done[#done + 1] = 'ok'
end
if step == 6 and n > 0 then
  -- The fence of step 3 (state and attempt), read for the whole batch in one call; the records
  -- written in one call and the live state dropped in one.
  local ids, records = {}, {}
  for a = 6, 5 + n do ids[#ids + 1] = ARGV[a] end
  local live = redis.call('HMGET', base .. 'live', unpack(ids))
  for k = 1, n do
    local state, attempt = string.match(live[k] or '', '^(%a+) %S+ (%d+)')
    if state ~= 'running' or attempt ~= '1' then
      return redis.error_reply('ERR completing a job that is not running')
    end
    records[#records + 1] = ids[k]
    records[#records + 1] = '1 normal 0 0 1 0 0::'
  end
  local hour = base .. 'c:' .. math.floor(tonumber(redis.call('TIME')[1]) / 3600)
  redis.call('HSET', hour, unpack(records))
  redis.call('EXPIRE', hour, 90000)
  redis.call('HDEL', base .. 'live', unpack(ids))
end
for prio, list in pairs(entries) do
  local acked = redis.call('XACK', base .. 's:' .. prio, group, unpack(list))
  if step == 5 and acked < #list then return redis.error_reply('ERR a completion not pending') end
  redis.call('XDEL', base .. 's:' .. prio, unpack(list))
end
if step == 5 and n > 0 then
  local results, keys = {}, {}
  for a = 6, 5 + n do
    results[#results + 1] = ARGV[a]
    results[#results + 1] = ''
    keys[#keys + 1] = base .. 'j:' .. ARGV[a]
  end
  local hour = base .. 'c:' .. math.floor(tonumber(redis.call('TIME')[1]) / 3600)
  redis.call('HSET', hour, unpack(results))
  redis.call('EXPIRE', hour, 90000)
  redis.call('DEL', unpack(keys))
end
local jobs, got = {}, 0
for _, prio in ipairs({ 'urgent', 'high', 'normal', 'low' }) do
  if got >= want then break end
  local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want - got, 'STREAMS', base .. 's:' .. prio, '>')
  local read = reply and reply[1][2] or {}
  if step == 6 and #read > 0 then
    -- Steps 1, 2 and 4 for the whole read: one HMGET of the live states, one HSET of the new ones.
    local ids, running = {}, {}
    for k = 1, #read do ids[k] = prio .. '/' .. read[k][1] end
    local live = redis.call('HMGET', base .. 'live', unpack(ids))
    for k = 1, #read do
      local state, entry, attempt, max, created = string.match(live[k] or '', '^(%a+) (%S+) (%d+) (%d+) (%d+)')
      if state ~= 'queued' or entry ~= read[k][1] then
        return redis.error_reply('ERR claiming a job that is not queued')
      end
      running[#running + 1] = ids[k]
      running[#running + 1] = 'running ' .. entry .. ' 1 ' .. max .. ' ' .. created .. ' ' .. consumer .. ' 1'
      jobs[#jobs + 1] = ids[k]
      jobs[#jobs + 1] = read[k][2][4]
      for _ = 1, 7 do jobs[#jobs + 1] = '1' end
    end
    redis.call('HSET', base .. 'live', unpack(running))
    got = got + #read
    read = {}
  end
  for _, e in ipairs(read) do
    local id = prio .. '/' .. e[1]
    local key = base .. 'j:' .. id
    if step >= 1 then
      local job = redis.call('HMGET', key, 'state', 'entry', 'attempt', 'max', 'meta', 'user', 'created', 'spent', 'prio')
      if job[1] ~= 'queued' then return redis.error_reply('ERR claiming a job that is not queued') end
    end
    if step >= 2 then
      redis.call('HSET', key, 'state', 'running', 'attempt', 1, 'owner', consumer, 'started', 1, 'prio', prio)
    end
    jobs[#jobs + 1] = id
    jobs[#jobs + 1] = e[2][4]
    if step >= 4 then
      for _ = 1, 7 do jobs[#jobs + 1] = '1' end
    end
    got = got + 1
  end
end
return { jobs, done, got < want and 1 or 0 }
`;

const PREFIX = "cost:";

/**
 * The queue the Worker sees. A drain of no-op jobs calls only these members of `Queue`: the
 * claim (carrying completions), the completion alone, the wait once the streams run dry, the
 * lease renewal (every 10 s) and the connection to duplicate for that wait.
 */
class RecordCostQueue {
  private sha = "";

  constructor(
    readonly redis: RedisClient,
    private readonly step: number,
  ) {}

  async prepare(jobs: number, data: string) {
    this.sha = (await this.redis.script("LOAD", CLAIM)) as string;
    for (const p of PRIORITIES) await this.redis.xgroup("CREATE", `${PREFIX}s:${p}`, "g", "0", "MKSTREAM");
    for (let from = 0; from < jobs; from += 1_000) {
      const adds = this.redis.pipeline();
      for (let i = from; i < Math.min(jobs, from + 1_000); i++)
        adds.xadd(`${PREFIX}s:normal`, "*", "i", `j${i}`, "d", data);
      const entries = (await adds.exec()) ?? [];
      if (this.step === 0) continue;
      if (this.step === SHARED) {
        const live = entries.flatMap(([, entry]) => [
          `normal/${String(entry)}`,
          `queued ${String(entry)} 0 1 ${Date.now()}`,
        ]);
        await this.redis.hset(`${PREFIX}live`, ...live);
        continue;
      }
      // The fields enqueue.lua writes for a job with no user, meta or spent attempts.
      const hashes = this.redis.pipeline();
      for (const [, entry] of entries)
        hashes.hset(`${PREFIX}j:normal/${String(entry)}`, {
          state: "queued",
          entry: String(entry),
          prio: "normal",
          attempt: 0,
          max: 1,
          created: Date.now(),
        });
      await hashes.exec();
    }
  }

  async claimNow(
    consumer: string,
    _priorities: readonly Priority[],
    want: number,
    done: readonly Completion[] = [],
  ): Promise<Claim> {
    const args = ["g", consumer, want, this.step, done.length, ...done.map((d) => d.id)];
    const [flat, completed, short] = (await this.redis.evalsha(this.sha, 1, PREFIX, ...args)) as [
      string[],
      CompleteOutcome[],
      number,
    ];
    const width = this.step >= 4 ? 9 : 2;
    const jobs: ClaimedJob[] = [];
    for (let i = 0; i < flat.length; i += width) {
      jobs.push({
        id: flat[i]!,
        attempt: 1,
        priority: "normal",
        maxAttempts: 1,
        data: flat[i + 1]!,
        userId: undefined,
        createdAt: 0,
        runAttempt: 1,
        meta: {},
        // The stand-in's id carries its entry (see CLAIM).
        entry: "",
      });
    }
    // A short claim means the drain is over: the wait below then ends the Worker's dry spell.
    return { jobs, dry: short === 1, completed };
  }

  async completeNow(done: readonly Completion[]): Promise<readonly CompleteOutcome[]> {
    return (await this.claimNow("completions", [], 0, done)).completed;
  }

  async waitForWork(
    _blocking: RedisClient,
    _priorities: readonly Priority[],
    timeoutMs: number,
  ): Promise<readonly Priority[] | undefined> {
    await sleep(Math.min(timeoutMs, 50));
    return undefined;
  }

  /** Nothing waits on the stand-in's streams but its own Worker. */
  async passWakeNow(): Promise<void> {}

  /** Nothing enqueues through the stand-in while its Worker runs. */
  acceptHandoffs(): () => void {
    return () => {};
  }

  renew() {
    return Effect.succeed([]);
  }

  /**
   * Every job acknowledged and deleted; in steps 3 and 4 every job's record says completed, in
   * steps 5 and 6 every job has a result in the hourly hashes and no record (or live state) left.
   */
  async verify(jobs: number) {
    const left = await this.redis.xlen(`${PREFIX}s:normal`);
    const pending = (await this.redis.xpending(`${PREFIX}s:normal`, "g")) as [number, ...unknown[]];
    if (left !== 0 || pending[0] !== 0)
      throw new Error(`step ${this.step}: ${left} entries left, ${pending[0]} pending`);
    if (this.step === BULK || this.step === SHARED) {
      const hours = await this.redis.keys(`${PREFIX}c:*`);
      const results = (await Promise.all(hours.map((key) => this.redis.hlen(key)))).reduce(
        (a, b) => a + b,
        0,
      );
      const [remaining, what] =
        this.step === BULK
          ? [(await this.redis.keys(`${PREFIX}j:*`)).length, "job hashes"]
          : [await this.redis.hlen(`${PREFIX}live`), "live states"];
      if (results !== jobs || remaining !== 0)
        throw new Error(`step ${this.step}: ${results}/${jobs} results kept, ${remaining} ${what} left`);
      return;
    }
    // Every job's own record, in the state the step leaves it: none kept at step 0, read only at
    // step 1 (still queued), written running at step 2, completed at steps 3 and 4. A key name in
    // the script that differed from prepare's would leave other hashes, or none.
    const expected = [undefined, "queued", "running", "completed", "completed"][this.step];
    const states = new Map<string | null, number>();
    let cursor = "0";
    do {
      const [next, keys] = await this.redis.scan(cursor, "MATCH", `${PREFIX}j:*`, "COUNT", 1_000);
      cursor = next;
      for (const state of await Promise.all(keys.map((key) => this.redis.hget(key, "state"))))
        states.set(state, (states.get(state) ?? 0) + 1);
    } while (cursor !== "0");
    const want = expected === undefined ? [] : [[expected, jobs]];
    if (JSON.stringify([...states]) !== JSON.stringify(want))
      throw new Error(
        `step ${this.step}: job records ${JSON.stringify([...states])}, expected ${JSON.stringify(want)}`,
      );
  }
}

const drain = async (url: string, step: number, jobs: number, concurrency: number): Promise<number> => {
  const redis = connectRedis(url, { name: "record-cost" });
  try {
    const queue = new RecordCostQueue(redis, step);
    await queue.prepare(jobs, JSON.stringify(payload()));
    let completed = 0;
    let finishedAt = Number.NaN;
    let problem: string | undefined;
    const started = performance.now();
    const worker = new Worker({
      // Only the members RecordCostQueue has are reached (see there).
      queue: queue as unknown as Queue,
      consumer: "w",
      priorities: PRIORITIES,
      concurrency,
      handler: async () => undefined,
      onEvent: (event) => {
        if (event.type !== "completed") problem ??= event.type;
        else if (++completed === jobs) finishedAt = performance.now();
      },
    }).start();
    try {
      await waitFor(`step ${step}`, {
        done: () => completed >= jobs,
        progress: () => completed,
        failure: () => (problem === undefined ? undefined : `a worker event ${problem}`),
      });
    } finally {
      await worker.stop();
    }
    await queue.verify(jobs);
    return jobs / ((finishedAt - started) / 1000);
  } finally {
    redis.disconnect();
  }
};

runStandalone(async (target) => {
  const { values } = parseArgs({
    options: {
      jobs: { type: "string", default: "30000" },
      rounds: { type: "string", default: "3" },
      concurrency: { type: "string", default: "16,100" },
    },
  });
  const [jobs, rounds, ...levels] = wholeNumbers("--jobs, --rounds and --concurrency", [
    values.jobs,
    values.rounds,
    ...values.concurrency.split(","),
  ]) as [number, number, ...number[]];
  const ours = new Ratatoskr(target);
  const bullmq = new Bullmq(target);
  const sides = ["ours", ...STEPS.map((_, step) => `step ${step}`), "BullMQ"];
  for (const concurrency of levels) {
    const figures = new Map<string, number[]>(sides.map((side) => [side, []]));
    for (let round = 0; round < rounds; round++) {
      for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
        await target.admin.flushall();
        const jobsPerSecond =
          side === "ours"
            ? (await ours.drainMain(jobs, concurrency, "single")).jobsPerSecond!
            : side === "BullMQ"
              ? (await bullmq.drainMain(jobs, concurrency, "single")).jobsPerSecond!
              : await drain(target.url, Number(side.slice(5)), jobs, concurrency);
        figures.get(side)!.push(jobsPerSecond);
      }
    }
    const theirs = median(figures.get("BullMQ")!);
    console.log(`\nconcurrency ${concurrency}, ${jobs.toLocaleString("en-US")} jobs, ${rounds} rounds`);
    console.log("| drain | jobs/s median (min-max) | ÷ BullMQ |\n|---|---|---|");
    for (const side of sides) {
      const values = figures.get(side)!;
      const label = side.startsWith("step ") ? `${side}: ${STEPS[Number(side.slice(5))]}` : side;
      const spread = `${formatNumber(median(values))} (${formatNumber(Math.min(...values))}-${formatNumber(Math.max(...values))})`;
      console.log(`| ${label} | ${spread} | ${(median(values) / theirs).toFixed(2)} |`);
    }
  }
});
