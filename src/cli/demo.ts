import { setTimeout as sleep } from "node:timers/promises";
import { DateTime, Effect, Either } from "effect";
import { jobCodec, newTaskId, type Priority } from "../domain/index.js";
import { QueueAdmin } from "../queue/admin.js";
import { Worker, type WorkerEvent } from "../queue/worker.js";
import { connect } from "./connect.js";
import { formatStats } from "./table.js";

const SUBMISSIONS: ReadonlyArray<{ user: number; priority: Priority }> = [
  { user: 1, priority: "low" },
  { user: 2, priority: "normal" },
  { user: 3, priority: "urgent" },
  { user: 4, priority: "high" },
  { user: 5, priority: "normal" },
  { user: 6, priority: "low" },
  { user: 7, priority: "high" },
];

const captionTask = (user: number, priority: Priority) => {
  const id = newTaskId();
  const data = jobCodec.encode("caption", {
    task_id: id,
    user_id: user,
    platform_connection_id: user,
    priority,
    settings: {
      max_posts_per_run: 50,
      max_caption_length: 500,
      optimal_min_length: 80,
      optimal_max_length: 200,
      reprocess_existing: false,
      processing_delay: 1,
    },
    created_at: DateTime.unsafeNow(),
    retry_count: 0,
    max_retries: 3,
  });
  return { id, priority, data, userId: String(user) };
};

/**
 * The queue engine at work, end to end, on the embedded defaults: strict priority with two
 * worker slots, the one-active-task-per-user rule, a retry and a dead letter. Each job stands
 * in for a caption run with a short wait; the real pipeline is its own piece of work.
 */
export const runDemo = async (): Promise<void> => {
  const c = await connect({ allowPrivate: true, name: "ratatoskr-demo" });
  const say = (line: string) => process.stdout.write(`${line}\n`);
  try {
    say(
      c.privateRedis
        ? `Started a private redis-server at ${c.privateRedis.url}`
        : `Using ${c.config.REDIS_URL}`,
    );
    const queue = c.queue;
    const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e);
    const userOf = new Map<string, string>();

    for (const s of SUBMISSIONS) {
      const task = captionTask(s.user, s.priority);
      await run(queue.enqueue(task));
      userOf.set(task.id, task.userId);
      say(`submitted  ${s.priority.padEnd(6)}  user ${s.user}  task ${task.id}`);
    }
    const second = await run(Effect.either(queue.enqueue(captionTask(3, "urgent"))));
    if (Either.isLeft(second)) say(`refused    a second task of user 3: ${second.left.message}`);
    await run(queue.enqueue({ id: "not-a-caption-task", priority: "high", data: "this is not an envelope" }));
    say("submitted  high    a garbage payload (it must be dead-lettered, not crash anything)");

    let ended = 0;
    const total = SUBMISSIONS.length + 1;
    const onEvent = (e: WorkerEvent) => {
      if (e.type === "completed")
        say(`completed  ${e.job.priority.padEnd(6)}  user ${userOf.get(e.job.id)}  attempt ${e.job.attempt}`);
      if (e.type === "retry")
        say(`retrying   ${e.job.priority.padEnd(6)}  user ${userOf.get(e.job.id)}  after: ${e.error}`);
      if (e.type === "dead") say(`dead       ${e.job.priority.padEnd(6)}  ${e.job.id}: ${e.error}`);
      if (e.type === "completed" || e.type === "dead") ended++;
    };
    say("\nA worker with 2 slots starts now: urgent first, then high, normal, low.");
    const worker = new Worker({
      queue,
      consumer: `demo-${process.pid}`,
      priorities: ["urgent", "high", "normal", "low"],
      concurrency: 2,
      leaseMs: c.config.RT_LEASE_MS,
      onEvent,
      validate: (job) =>
        Either.match(jobCodec.decode(job.data), { onLeft: (e) => e.message, onRight: () => undefined }),
      handler: async (job, { signal }) => {
        await sleep(150, undefined, { signal });
        if (job.userId === "5" && job.runAttempt === 1) throw new Error("connection reset (simulated)");
        return JSON.stringify({ handled_by: `demo-${process.pid}` });
      },
    }).start();
    while (ended < total) await sleep(20);
    await worker.stop();

    const admin = new QueueAdmin(queue);
    const stats = await run(admin.stats());
    say(`\n${formatStats(stats)}`);
    const dead = await run(admin.listDead());
    for (const d of dead) say(`dead letter ${d.priority} ${d.entryId}: ${d.reason}`);
  } finally {
    await c.close();
  }
};
