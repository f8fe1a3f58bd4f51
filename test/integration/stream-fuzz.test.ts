import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it, onTestFailed, onTestFinished } from "vitest";
import type { Priority } from "../../src/domain/priority.js";
import { type DeadLetter, QueueAdmin } from "../../src/queue/admin.js";
import { packStrings } from "../support/live-state.js";
import { fuzzSeed, prng } from "../support/fuzz.js";
import { ALL, eventLog, makeQueue, testWorker } from "../support/queue.js";
import { captionEnvelope, validateEnvelope } from "../support/envelopes.js";
import { run, useRedis } from "../support/redis.js";

/**
 * Security point 6: random and malformed stream entries thrown straight into the priority streams
 * while a worker claims from them. Seeded: the seed is in the test name and printed on failure;
 * `RT_FUZZ_SEED=<seed> npx vitest run test/integration/stream-fuzz.test.ts` replays a run.
 *
 * A task is written in either layout claim reads: its live state (a field of the queue's `live`
 * hash, MessagePack, as enqueue writes it now), or, with no live state, its own hash `j:<id>` (an
 * ended job's, or a live job's written before the live hash: the "legacy layout").
 *
 * The contract asserted, per entry (claim.lua, then the worker):
 * - no `i` field, or an empty one (claim reads an empty id as none): dead letter
 *   "corrupt stream entry <entry>: no task id" (the fields kept as data);
 * - `i` naming no live state and no key, or a hash without a state: dead letter
 *   "orphan stream entry <entry>: ...", unless the task completed (its record kept, its hash gone):
 *   then dropped, as a leftover;
 * - `i` naming no live state and a key that is not a hash: dead letter
 *   "corrupt stream entry <entry>: ...";
 * - `i` naming a live state that does not parse: the task is failed and dead-lettered once (from
 *   whichever entry naming it is read first) with "corrupt task data: its live state "..." does
 *   not parse", its live state gone;
 * - `i` naming a task that is not queued from this very entry (a leftover, a duplicate): dropped,
 *   the task untouched (its hash, or its live state);
 * - `i` naming the queued task of this entry: claimed once; fields the queue cannot trust
 *   (attempt, spent, max, prio) fail it unrun with "corrupt task data: ...", a payload that is not
 *   a valid envelope fails it unrun with the decoder's reason; either way one dead letter naming
 *   it. Anything else runs and completes.
 * Every entry is acknowledged and deleted (nothing left in a stream or its pending list), no
 * script fails, no answer is refused as stale, the valid jobs sent during and after the barrage
 * all complete (a stuck, crashed or wedged worker fails the test), and the live hash keeps only
 * the states no entry was for.
 */
const SEED = fuzzSeed();
const ITEMS = 300;
const HUGE = 100 * 1024;

/** A valid caption envelope (its task id is a fresh UUID: the queue's job id is the fuzz's own). */
const envelope = (priority: Priority) => captionEnvelope(priority);

/** The reasons a dead letter may give, each a sentence a person can act on. */
const REASONS = [
  /^corrupt stream entry \d+-\d+: no task id$/,
  /^orphan stream entry \d+-\d+: the task data is gone$/,
  /^corrupt stream entry \d+-\d+: its task key is not a hash$/,
  /^corrupt task data: (attempt|spent|max|prio) /,
  /^corrupt task data: its live state "[ -~]{0,40}" does not parse$/,
  /^corrupt envelope: /,
  /^unsupported envelope version /,
  /^unknown job kind /,
  /^invalid caption payload: /,
  /^validation failed: /,
];
const TASK_REASON =
  /^(corrupt task data|corrupt envelope|unsupported envelope|unknown job kind|invalid caption payload|validation failed)/;

type Field = string | Buffer;

/** What must become of one entry written to a stream. */
type Expected =
  | { readonly type: "dead-entry"; readonly priority: Priority; readonly reason: string }
  | { readonly type: "dead-task"; readonly id: string; readonly reason: RegExp | string }
  | { readonly type: "completed"; readonly id: string }
  /**
   * Acknowledged and deleted; when `hash` is given, the task it named is left exactly so; when
   * `live` is, the task's live state is left exactly so, and it has no hash of its own.
   */
  | {
      readonly type: "dropped";
      readonly hash?: { key: string; fields: Field[] };
      readonly live?: { id: string; value: Buffer };
    };

interface Written {
  readonly what: string;
  readonly priority: Priority;
  readonly entry: string;
  readonly fields: Field[];
  readonly expected: Expected;
  /** What a copy of this entry comes to (the copy's entry id aside). */
  readonly copy: (priority: Priority, entry: string) => Expected;
}

/** XADD + HSET in one step, so the worker never sees the entry before the task that names it. */
const WRITE_TASK = `
local n = tonumber(ARGV[1])
local hash, fields = {}, {}
for k = 2, 1 + 2 * n do hash[#hash + 1] = ARGV[k] end
for k = 2 + 2 * n, #ARGV do fields[#fields + 1] = ARGV[k] end
local entry = redis.call('XADD', KEYS[1], '*', unpack(fields))
redis.call('DEL', KEYS[2])
if #hash > 0 then redis.call('HSET', KEYS[2], unpack(hash)) end
redis.call('HSET', KEYS[2], 'entry', entry)
return entry`;

/**
 * XADD + HSET of the task's live state in one step, as WRITE_TASK (enqueue, then patchLive or
 * writeRawLive, would race the worker's claim). The value is ARGV[2], then (if ARGV[4] is '1') the
 * new entry id as a MessagePack string, then ARGV[3]: a live state names the entry it was queued
 * from, which exists only once the XADD ran.
 */
const WRITE_LIVE = `
local entry = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 5))
local value = ARGV[2]
if ARGV[4] == '1' then value = value .. string.char(0xa0 + #entry) .. entry end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[2], ARGV[1], value .. ARGV[3])
return entry`;

/** common.lua's shown(): the first 40 bytes, anything but printable ASCII as '?', quoted. */
const shown = (value: Buffer) =>
  `"${[...value.subarray(0, 40)].map((b) => (b >= 0x20 && b <= 0x7e ? String.fromCharCode(b) : "?")).join("")}"`;

const orphanReason = (entry: string) => `orphan stream entry ${entry}: the task data is gone`;
const noIdReason = (entry: string) => `corrupt stream entry ${entry}: no task id`;
const notHashReason = (entry: string) => `corrupt stream entry ${entry}: its task key is not a hash`;
const unparsedReason = (value: Buffer) => `corrupt task data: its live state ${shown(value)} does not parse`;

describe(`malformed stream entries, thrown at a worker (seed ${SEED})`, () => {
  const redis = useRedis();

  it("dead-letters or drops every bad entry, leaves nothing pending, and keeps running the good jobs", async () => {
    onTestFailed(() => {
      console.error(
        `stream fuzz failed with seed ${SEED}; replay: RT_FUZZ_SEED=${SEED} npx vitest run test/integration/stream-fuzz.test.ts`,
      );
    });
    const started = Date.now();
    const random = prng(SEED);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const chance = (p: number) => random() < p;
    const queue = await makeQueue(redis);
    const raw = redis.client();
    const admin = new QueueAdmin(queue);

    const log = eventLog();
    const handled = new Map<string, number>();
    const worker = testWorker(queue, {
      consumer: "fuzz",
      concurrency: 4,
      // Short, so leases are renewed (every 500 ms) while the barrage runs.
      leaseMs: 1_500,
      idleBlockMs: 200,
      validate: validateEnvelope,
      onEvent: log.onEvent,
      handler: async (job) => {
        handled.set(job.id, (handled.get(job.id) ?? 0) + 1);
        // Not the seeded generator: the handler runs concurrently with the writes, and the run
        // must draw the same inputs from a seed however the two interleave.
        await sleep(Math.floor(Math.random() * 5));
        return "ok";
      },
    }).start();
    // Stopped whatever the outcome (the end of the test stops it first and checks the answer).
    onTestFinished(async () => {
      await worker.stop({ timeoutMs: 500 });
    });

    let n = 0;
    const fresh = (label: string) => `fz-${SEED}-${n++}-${label}`;
    const binary = () => Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0xa0, 0xa1, n++ & 0xff]);
    const junkValue = (): Field =>
      pick<() => Field>([
        () => "",
        () => " ",
        () => "x".repeat(HUGE),
        binary,
        () => "i",
        () => "\u0000",
        () => "🙂",
        () => "{not json",
        () => "-1",
        () => "NaN",
        () => fresh("v"),
        () => "\r\n%s%n",
      ])();
    // Anything but exactly `i`.
    const junkName = (): Field =>
      pick<() => Field>([
        () => "I",
        () => "id",
        () => "task",
        () => "",
        () => " i",
        () => "i ",
        () => "ii",
        () => "\u0000i",
        binary,
        () => "n".repeat(HUGE / 4),
        () => "data",
        () => "state",
      ])();
    const junkPairs = (max: number, except: readonly string[] = []): Field[] =>
      Array.from({ length: Math.floor(random() * (max + 1)) }, () => [junkName(), junkValue()])
        .filter(([name]) => !except.includes(String(name)))
        .flat();
    const otherPriority = (p: Priority) => pick(ALL.filter((q) => q !== p));

    const written: Written[] = [];
    const valid: string[] = [];
    /** A copy of an entry naming a real task is a leftover (not that task's entry): dropped. */
    const dropCopy = () => ({ type: "dropped" }) as const;

    const xadd = async (priority: Priority, fields: Field[]) =>
      (await raw.xadd(queue.keys.stream(priority), "*", ...fields)) as string;
    const writeTask = async (
      priority: Priority,
      id: string,
      hash: Record<string, Field>,
      fields: Field[],
    ) => {
      const pairs = Object.entries(hash).flat();
      return (await raw.eval(
        WRITE_TASK,
        2,
        queue.keys.stream(priority),
        queue.keys.job(id),
        pairs.length / 2,
        ...pairs,
        ...fields,
      )) as string;
    };
    /** The sane fields of a queued task, as enqueue writes them. */
    const saneTask = (priority: Priority): Record<string, Field> => {
      const attempt = Math.floor(random() * 6);
      return {
        state: "queued",
        prio: priority,
        attempt: String(attempt),
        spent: String(Math.floor(random() * (attempt + 1))),
        max: String(1 + Math.floor(random() * 4)),
        user: "",
        created: String(Date.now()),
        data: envelope(priority),
      };
    };
    /** Which layout a task is written in: its live state (as enqueue writes now), or its own hash. */
    const inLive = () => chance(0.7);
    const bytes = (value: Field) => (Buffer.isBuffer(value) ? value : Buffer.from(value, "utf8"));
    /**
     * Writes an entry and, with it, the task's live state: `prefix`, then (with `embed`) the new
     * entry's id as a MessagePack string, then `suffix`. The value written comes back with the entry.
     */
    const writeLive = async (
      priority: Priority,
      id: string,
      fields: Field[],
      prefix: Buffer,
      embed: boolean,
      suffix: Buffer = Buffer.alloc(0),
    ) => {
      const entry = (await raw.eval(
        WRITE_LIVE,
        3,
        queue.keys.stream(priority),
        queue.keys.live,
        queue.keys.job(id),
        id,
        prefix,
        suffix,
        embed ? "1" : "0",
        ...fields,
      )) as string;
      return { entry, value: Buffer.concat([prefix, ...(embed ? [packStrings([entry])] : []), suffix]) };
    };
    /** A live state of twelve values whose fourth, the entry, is the one written with it. */
    const writeLiveTask = (priority: Priority, id: string, values: Field[], fields: Field[]) =>
      writeLive(priority, id, fields, packStrings(values.slice(0, 3)), true, packStrings(values.slice(4)));
    /**
     * A task's fields as the twelve values of a live state (state, attempt, hashed, entry, spent,
     * max, created, prio, user, meta, started, owner), the entry left for the write. A live state
     * has every value: a missing one is written empty.
     */
    const liveValues = (task: Record<string, Field>): Field[] => [
      task.state ?? "",
      task.attempt ?? "",
      pick(["0", "1"]),
      "",
      task.spent ?? "",
      task.max ?? "",
      task.created ?? "",
      task.prio ?? "",
      task.user ?? "",
      "",
      "",
      "",
    ];

    const kinds: Array<[weight: number, write: (priority: Priority) => Promise<void>]> = [
      [
        12,
        async (priority) => {
          const fields = junkPairs(3);
          if (fields.length === 0) fields.push(junkName(), junkValue());
          if (chance(0.05)) fields.push(...Array.from({ length: 200 }, (_, k) => [`f${k}`, "v"]).flat());
          const entry = await xadd(priority, fields);
          const copy = (p: Priority, e: string) =>
            ({ type: "dead-entry", priority: p, reason: noIdReason(e) }) as const;
          written.push({
            what: "no task id",
            priority,
            entry,
            fields,
            expected: copy(priority, entry),
            copy,
          });
        },
      ],
      [
        12,
        async (priority) => {
          const id = pick<() => Field>([
            () => fresh("orphan"),
            () => "",
            () => `${fresh("huge")}${"h".repeat(HUGE)}`,
            binary,
            () => `../../${fresh("path")}`,
            () => `*${fresh("star")}`,
            () => `j:${fresh("nested")}`,
            () => `${fresh("emoji")}🙂`,
          ])();
          const fields = [...junkPairs(chance(0.1) ? 100 : 2), "i", id, ...junkPairs(2)];
          const entry = await xadd(priority, fields);
          // An empty id is an id whose task is gone, like any other.
          const reason = orphanReason;
          const copy = (p: Priority, e: string) =>
            ({ type: "dead-entry", priority: p, reason: reason(e) }) as const;
          written.push({
            what: id === "" ? "empty task id" : "orphan id",
            priority,
            entry,
            fields,
            expected: copy(priority, entry),
            copy,
          });
        },
      ],
      [
        5,
        async (priority) => {
          const id = fresh("stateless");
          const junk = junkPairs(3, ["state"]);
          await raw.hset(queue.keys.job(id), "data", envelope(priority), "prio", priority, ...junk);
          const fields = ["i", id];
          const entry = await xadd(priority, fields);
          const copy = (p: Priority, e: string) =>
            ({ type: "dead-entry", priority: p, reason: orphanReason(e) }) as const;
          written.push({
            what: "hash without state",
            priority,
            entry,
            fields,
            expected: copy(priority, entry),
            copy,
          });
        },
      ],
      [
        6,
        async (priority) => {
          // No live state, and a key of another type under the task's name: the task cannot be read.
          const id = fresh("wrongtype");
          const key = queue.keys.job(id);
          const type = pick(["string", "list", "set", "zset", "stream"] as const);
          if (type === "string") await raw.set(key, envelope(priority));
          if (type === "list") await raw.rpush(key, "state", "queued");
          if (type === "set") await raw.sadd(key, "queued");
          if (type === "zset") await raw.zadd(key, 1, "queued");
          if (type === "stream") await raw.xadd(key, "*", "state", "queued");
          const fields = ["i", id];
          const entry = await xadd(priority, fields);
          const copy = (p: Priority, e: string) =>
            ({ type: "dead-entry", priority: p, reason: notHashReason(e) }) as const;
          written.push({
            what: `task key is a ${type}`,
            priority,
            entry,
            fields,
            expected: copy(priority, entry),
            copy,
          });
        },
      ],
      [
        10,
        async (priority) => {
          const id = fresh("stale");
          if (inLive()) {
            // Its live state: running or delayed (from any entry), or queued from another entry.
            const values = liveValues(saneTask(priority));
            values[0] = pick(["running", "delayed", "queued"]);
            values[3] = pick(["0-1", "", "9999999999999-0", "nope"]);
            if (values[0] === "running") {
              values[10] = String(Date.now());
              values[11] = pick(["fuzz", "another-worker"]);
            }
            const fields = ["i", id];
            const { entry, value } = await writeLive(priority, id, fields, packStrings(values), false);
            const expected = { type: "dropped", live: { id, value } } as const;
            written.push({
              what: `names a task it does not hold (live, ${String(values[0])} from "${String(values[3])}")`,
              priority,
              entry,
              fields,
              expected,
              copy: () => expected,
            });
            return;
          }
          // Its own hash (an ended job's, or a job's of before the live hash).
          const key = queue.keys.job(id);
          const hash: Field[] = chance(0.5)
            ? [
                "state",
                pick<Field>([
                  "running",
                  "completed",
                  "failed",
                  "cancelled",
                  "delayed",
                  "",
                  "QUEUED",
                  "queued ",
                  binary(),
                ]),
                "entry",
                pick(["0-1", "", "9999999999999-0", "nope"]),
              ]
            : ["state", "queued", ...(chance(0.5) ? ["entry", pick(["0-1", "", "nope"])] : [])];
          hash.push("prio", priority, "attempt", "1", "data", envelope(priority));
          await raw.hset(key, ...hash);
          const fields = ["i", id];
          const entry = await xadd(priority, fields);
          const expected = { type: "dropped", hash: { key, fields: hash } } as const;
          written.push({
            what: "names a task it does not hold",
            priority,
            entry,
            fields,
            expected,
            copy: () => expected,
          });
        },
      ],
      [
        15,
        async (priority) => {
          const id = fresh("corrupt");
          const hash = saneTask(priority);
          const spoilt: string[] = [];
          for (let k = 0, count = 1 + Math.floor(random() * 2); k < count; k++) {
            const field = pick(["attempt", "spent", "max", "prio"]);
            spoilt.push(field);
            if (field === "attempt" || field === "spent") {
              hash[field] = pick([
                "NaN",
                "nan",
                "inf",
                "-inf",
                "abc",
                "",
                "1.5",
                "-1",
                "1e400",
                "99999999999999999999",
                " 1",
                "0x10",
                "1e3",
              ]);
              if (field === "spent" && chance(0.2)) Object.assign(hash, { attempt: "1", spent: "5" });
            } else if (field === "max") {
              hash.max = pick(["0", "-1", "x", "", "NaN", "1.5", "1e2"]);
            } else if (chance(0.3)) {
              delete hash.prio;
            } else {
              hash.prio = pick<Field>(["", "bogus", "URGENT", "s:normal", binary()]);
            }
          }
          const junk = chance(0.2) ? junkPairs(2) : [];
          // In its live state (where a missing prio is an empty one), or in its own hash.
          const live = inLive();
          const fields = live ? ["i", id, "d", hash.data!, ...junk] : ["i", id, ...junk];
          const { entry } = live
            ? await writeLiveTask(priority, id, liveValues(hash), fields)
            : { entry: await writeTask(priority, id, hash, fields) };
          written.push({
            what: `task with corrupt ${spoilt.join(", ")} (${live ? "live" : "hash"})`,
            priority,
            entry,
            fields,
            expected: { type: "dead-task", id, reason: /^corrupt task data: (attempt|spent|max|prio) / },
            copy: dropCopy,
          });
        },
      ],
      [
        15,
        async (priority) => {
          const id = fresh("payload");
          const hash = saneTask(priority);
          hash.data = pick<() => Field>([
            () => "{not json",
            () => "",
            () => "x".repeat(HUGE),
            binary,
            () => "null",
            () => "[]",
            () => '"a string"',
            () => "42",
            () => JSON.stringify({ v: 99, kind: "caption", body: {} }),
            () => JSON.stringify({ v: "1", kind: "caption", body: {} }),
            () => JSON.stringify({ v: 1 }),
            () => JSON.stringify({ v: 1, kind: "resize", body: {} }),
            () => JSON.stringify({ v: 1, kind: "__proto__", body: {} }),
            () => JSON.stringify({ v: 1, kind: "caption", body: { user_id: -1 } }),
            () => JSON.stringify({ v: 1, kind: "caption", body: "x".repeat(HUGE) }),
            () => JSON.stringify({ v: 1, kind: "caption", body: null }),
            // Deep enough to overflow a recursive formatter's stack.
            () => `{"v":1,"kind":"caption","body":${"[".repeat(50_000)}${"]".repeat(50_000)}}`,
          ])();
          // In its live state (every counter there, the data in its entry, as enqueue writes
          // them), or in its own hash (where a missing counter is read as enqueue's default).
          const live = inLive();
          if (!live && chance(0.3)) for (const f of ["attempt", "spent", "max"]) delete hash[f];
          const fields = live ? ["i", id, "d", hash.data!] : ["i", id];
          const { entry } = live
            ? await writeLiveTask(priority, id, liveValues(hash), fields)
            : { entry: await writeTask(priority, id, hash, fields) };
          written.push({
            what: `task with a bad payload (${live ? "live" : "hash"})`,
            priority,
            entry,
            fields,
            expected: { type: "dead-task", id, reason: TASK_REASON },
            copy: dropCopy,
          });
        },
      ],
      [
        7,
        async (priority) => {
          const id = fresh("odd");
          const hash = saneTask(priority);
          hash.user = pick<Field>(["", binary(), `u${"u".repeat(HUGE)}`, fresh("user")]);
          hash.created = pick(["x", "", "-5", "1e400"]);
          // In its live state, or in its own hash (with, there, a field no script reads).
          const live = inLive();
          if (!live && chance(0.3)) hash.extra = junkValue();
          // A task recorded under another priority than the stream its entry is in.
          if (chance(0.4)) hash.prio = otherPriority(priority);
          const junk = junkPairs(2);
          const fields = live ? ["i", id, "d", hash.data!, ...junk] : ["i", id, ...junk];
          const { entry } = live
            ? await writeLiveTask(priority, id, liveValues(hash), fields)
            : { entry: await writeTask(priority, id, hash, fields) };
          written.push({
            what: `task with odd but harmless fields (prio ${String(hash.prio)}, created "${String(hash.created)}", ${live ? "live" : "hash"})`,
            priority,
            entry,
            fields,
            expected: { type: "completed", id },
            copy: dropCopy,
          });
        },
      ],
      [
        8,
        async (priority) => {
          // A live state that does not parse (the live layout's unreadable task: damaged bytes, not
          // the twelve strings of a live state), the task's data in its entry.
          const id = fresh("unparsed");
          const task = saneTask(priority);
          const values = liveValues(task);
          const fields = ["i", id, "d", task.data!];
          const variant = pick(["junk", "state", "short", "cut", "number"] as const);
          let done: { entry: string; value: Buffer };
          if (variant === "junk") {
            // Not MessagePack, or not strings.
            const junk = pick<() => Field>([
              () => "",
              () => "{not json",
              binary,
              () => "x".repeat(HUGE),
              () => "\u0000",
              () => "queued",
            ])();
            done = await writeLive(priority, id, fields, bytes(junk), false);
          } else if (variant === "state") {
            // Twelve strings, of this entry, in no live state.
            values[0] = pick<Field>(["completed", "failed", "cancelled", "", "QUEUED", "queued ", binary()]);
            done = await writeLiveTask(priority, id, values, fields);
          } else if (variant === "short") {
            // Fewer than the ten values claim reads.
            const k = Math.floor(random() * 10);
            done =
              k < 4
                ? await writeLive(priority, id, fields, packStrings(values.slice(0, k)), false)
                : await writeLive(
                    priority,
                    id,
                    fields,
                    packStrings(values.slice(0, 3)),
                    true,
                    packStrings(values.slice(4, k)),
                  );
          } else if (variant === "cut") {
            // Cut short inside the values claim reads.
            const rest = packStrings(values.slice(4, 10));
            const cut = rest.subarray(0, Math.floor(random() * rest.length));
            done = await writeLive(priority, id, fields, packStrings(values.slice(0, 3)), true, cut);
          } else {
            // The attempt a MessagePack integer, not a string.
            const prefix = Buffer.concat([
              packStrings([values[0]!]),
              Buffer.from([Number(values[1])]),
              packStrings([values[2]!]),
            ]);
            done = await writeLive(priority, id, fields, prefix, true, packStrings(values.slice(4)));
          }
          written.push({
            what: `live state that does not parse (${variant})`,
            priority,
            entry: done.entry,
            fields,
            expected: { type: "dead-task", id, reason: unparsedReason(done.value) },
            copy: dropCopy,
          });
        },
      ],
      [
        10,
        async () => {
          const original = written.length > 0 ? pick(written) : undefined;
          if (!original) return;
          const target = chance(0.7) ? original.priority : otherPriority(original.priority);
          const entry = await xadd(target, original.fields);
          written.push({
            what: `copy of ${original.entry} (${original.what})`,
            priority: target,
            entry,
            fields: original.fields,
            expected: original.copy(target, entry),
            copy: original.copy,
          });
        },
      ],
      [
        15,
        async (priority) => {
          const id = fresh("valid");
          const { entry } = await run(queue.enqueue({ id, priority, data: envelope(priority) }));
          valid.push(id);
          written.push({
            what: "valid job",
            priority,
            entry: entry!,
            fields: ["i", id],
            expected: { type: "completed", id },
            copy: dropCopy,
          });
        },
      ],
    ];
    const total = kinds.reduce((sum, [w]) => sum + w, 0);
    const pickKind = () => {
      let r = random() * total;
      for (const [w, write] of kinds) {
        if ((r -= w) < 0) return write;
      }
      return kinds[0]![1];
    };

    for (let i = 0; i < ITEMS; i++) {
      await pickKind()(pick(ALL));
      if (i % 20 === 19) await sleep(Math.floor(random() * 30));
    }
    const barrageMs = Date.now() - started;

    // The worker still takes new work after the barrage.
    const after = ALL.flatMap((priority) =>
      Array.from({ length: 4 }, () => ({ id: fresh("after"), priority })),
    );
    for (const a of after) await run(queue.enqueue({ ...a, data: envelope(a.priority) }));
    valid.push(...after.map((a) => a.id));

    // Settle: every stream empty and no entry pending, within a bounded time.
    const streamState = async () => {
      const out: Array<{ priority: Priority; length: number; pending: number }> = [];
      for (const priority of ALL) {
        const key = queue.keys.stream(priority);
        const length = await raw.xlen(key);
        const summary = (await raw.xpending(key, queue.group).catch(() => [0])) as [number];
        out.push({ priority, length, pending: Number(summary[0]) });
      }
      return out;
    };
    const completedIds = new Set(
      written.flatMap((w) => (w.expected.type === "completed" ? [w.expected.id] : [])).concat(valid),
    );
    const deadline = Date.now() + 6_000;
    let state = await streamState();
    while (
      Date.now() < deadline &&
      !(
        state.every((s) => s.length === 0 && s.pending === 0) &&
        worker.active === 0 &&
        [...completedIds].every((id) => handled.has(id))
      )
    ) {
      await sleep(20);
      state = await streamState();
    }
    const settledMs = Date.now() - started;

    // What was left behind, told by what each entry was, so a failure says which input stuck.
    const byEntry = new Map(written.map((w) => [`${w.priority}/${w.entry}`, w.what]));
    const leftovers: string[] = [];
    for (const s of state.filter((x) => x.length > 0 || x.pending > 0)) {
      const key = queue.keys.stream(s.priority);
      const entries = await raw.xrange(key, "-", "+", "COUNT", 20);
      const pending = (await raw.xpending(key, queue.group, "-", "+", 20)) as Array<[string, ...unknown[]]>;
      const pendingIds = new Set(pending.map(([id]) => id));
      for (const [id] of entries) {
        leftovers.push(
          `${s.priority} ${id} ${pendingIds.has(id) ? "pending" : "unread"}: ${byEntry.get(`${s.priority}/${id}`) ?? "?"}`,
        );
      }
    }
    // Each distinct error once, with how often: a failing script repeats itself at every claim.
    const errors = new Map<string, number>();
    for (const e of log.events) {
      if (e.type === "error") errors.set(e.error.slice(0, 200), (errors.get(e.error.slice(0, 200)) ?? 0) + 1);
    }
    // Soft: a failing run reports all of these at once, which together say what went wrong.
    expect
      .soft(
        [...errors].map(([error, times]) => `${times}x ${error}`),
        `worker errors (seed ${SEED})`,
      )
      .toEqual([]);
    expect.soft(log.ids("stale"), `answers refused as stale: fencing broken (seed ${SEED})`).toEqual([]);
    expect.soft(leftovers, `entries left in the streams after settling (seed ${SEED})`).toEqual([]);
    expect(state, `stream lengths and pending counts (seed ${SEED})`).toEqual(
      ALL.map((priority) => ({ priority, length: 0, pending: 0 })),
    );
    expect(worker.active, `jobs still running (seed ${SEED})`).toBe(0);

    // Every valid job, sent during and after the barrage, ran exactly once; so did the tasks
    // with odd but harmless fields.
    // Each told by what it was and, if it ended so, why it failed.
    const whatOf = new Map(written.map((w) => ["id" in w.expected ? w.expected.id : "", w.what]));
    const notRun: string[] = [];
    for (const id of completedIds) {
      if (handled.get(id) === 1) continue;
      const error = await raw.hget(queue.keys.job(id), "error");
      notRun.push(
        `${id} (${whatOf.get(id) ?? "valid job"}): run ${handled.get(id) ?? 0} times${error ? `; ${error.slice(0, 120)}` : ""}`,
      );
    }
    expect(notRun, `jobs not run exactly once (seed ${SEED})`).toEqual([]);
    for (const id of completedIds) expect((await run(queue.getJob(id)))?.state, id).toBe("completed");
    // Nothing else ran: a corrupt task or bad payload never reaches the handler.
    expect([...handled.keys()].filter((id) => !completedIds.has(id))).toEqual([]);

    // The dead letters: exactly one per bad entry or bad task, each with a reason to act on.
    const dead = await run(admin.listDead({ limit: 10_000 }));
    const unreadable = dead.filter((d) => !REASONS.some((r) => r.test(d.reason)) || d.reason.length > 4_100);
    expect(
      unreadable.map((d) => d.reason.slice(0, 200)),
      `dead letters without a clear reason (seed ${SEED})`,
    ).toEqual([]);
    const used = new Set<DeadLetter>();
    const problems: string[] = [];
    for (const w of written) {
      const e = w.expected;
      if (e.type === "dead-entry") {
        const found = dead.filter((d) => d.priority === e.priority && d.reason === e.reason);
        if (found.length !== 1)
          problems.push(`${w.priority} ${w.entry} (${w.what}): ${found.length} dead letters`);
        // An entry naming no task keeps its fields, for a person to look at.
        else if (e.reason.endsWith("no task id") && found[0]!.data === "")
          problems.push(`${w.priority} ${w.entry} (${w.what}): its fields were not kept`);
        found.forEach((d) => used.add(d));
      } else if (e.type === "dead-task") {
        const found = dead.filter((d) => d.taskId === e.id);
        const job = await raw.hmget(queue.keys.job(e.id), "state", "error");
        const matches = (reason: string) =>
          typeof e.reason === "string" ? reason === e.reason : e.reason.test(reason);
        if (found.length !== 1 || !matches(found[0]!.reason)) {
          problems.push(
            `${w.priority} ${w.entry} (${w.what}): ${found.length} dead letters, ${found.map((d) => JSON.stringify(d.reason.slice(0, 120))).join(", ")}`,
          );
        } else if (job[0] !== "failed" || job[1] !== found[0]!.reason) {
          problems.push(`${e.id} (${w.what}): dead-lettered but the task is ${job[0]} (${job[1]})`);
        }
        found.forEach((d) => used.add(d));
      } else if (e.type === "dropped" && e.live) {
        const now = await raw.hgetBuffer(queue.keys.live, e.live.id);
        const own = await raw.exists(queue.keys.job(e.live.id));
        if (now?.equals(e.live.value) !== true || own !== 0)
          problems.push(`${e.live.id} (${w.what}): the task it named was changed`);
      } else if (e.type === "dropped" && e.hash) {
        const now = await raw.hgetallBuffer(e.hash.key);
        const was = new Map<string, Buffer>();
        for (let k = 0; k < e.hash.fields.length; k += 2) {
          was.set(String(e.hash.fields[k]), Buffer.from(e.hash.fields[k + 1]!));
        }
        const same =
          Object.keys(now).length === was.size &&
          [...was].every(([field, value]) => now[field]?.equals(value) === true);
        if (!same) problems.push(`${e.hash.key} (${w.what}): the task it named was changed`);
      }
    }
    expect(problems, `entries that did not end as they should (seed ${SEED})`).toEqual([]);
    // The live hash keeps only the states no entry was for: every task that ran, failed or was
    // dead-lettered left it.
    const liveKept = written.flatMap((w) =>
      w.expected.type === "dropped" && w.expected.live ? [w.expected.live.id] : [],
    );
    expect((await raw.hkeys(queue.keys.live)).sort(), `live states left (seed ${SEED})`).toEqual(
      [...new Set(liveKept)].sort(),
    );
    expect(
      dead.filter((d) => !used.has(d)).map((d) => `${d.priority} ${d.taskId}: ${d.reason.slice(0, 120)}`),
      `unexpected dead letters (seed ${SEED})`,
    ).toEqual([]);
    // The worker's own dead letters are the tasks it claimed and refused (bad payloads).
    expect(log.count("dead")).toBe(
      written.filter((w) => w.expected.type === "dead-task" && w.what.startsWith("task with a bad payload"))
        .length,
    );

    const { abandoned } = await worker.stop({ timeoutMs: 2_000 });
    expect(abandoned).toBe(0);
    const counts = new Map<string, number>();
    for (const w of written) counts.set(w.expected.type, (counts.get(w.expected.type) ?? 0) + 1);
    console.log(
      `stream fuzz seed ${SEED}: ${written.length} entries (${[...counts].map(([k, v]) => `${k} ${v}`).join(", ")}), ` +
        `${dead.length} dead letters, ${completedIds.size} jobs run; barrage ${barrageMs} ms, settled at ${settledMs} ms`,
    );
  }, 30_000);
});
