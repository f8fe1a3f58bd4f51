import { describe, expect, it } from "vitest";
import { QueueAdmin } from "../../src/queue/admin.js";
import { ALL, makeQueue, newJob } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

/** Bigger than Redis's compact-hash limit (64 bytes a value), as a real caption envelope is. */
const DATA = JSON.stringify({ kind: "caption", note: "x".repeat(280) });

/**
 * A waiting or running job's data lives in its stream entry, not its hash: these follow one
 * payload through every transition that moves a job to another entry or out of the streams.
 */
describe("a job's data", () => {
  const redis = useRedis();

  it("keeps the job's state small while the job waits, and is readable while it waits and runs", async () => {
    const queue = await makeQueue(redis);
    const job = { ...newJob("normal"), data: DATA };
    await run(queue.enqueue(job));
    // A waiting job is its entry and its live state; the data is in the entry only.
    expect(await redis.client().exists(queue.keys.job(job.id))).toBe(0);
    expect(await redis.client().hstrlen(queue.keys.live, job.id)).toBeLessThan(100);
    expect((await run(queue.getJob(job.id)))?.data).toBe(DATA);
    const [claimed] = (await run(queue.claim("c", ALL, 1))).jobs;
    expect(claimed?.data).toBe(DATA);
    expect((await run(queue.getJob(job.id)))?.data).toBe(DATA);
  });

  it("goes with the job through a retry, a delayed retry, a release, a new priority and a redrive", async () => {
    const queue = await makeQueue(redis);
    const admin = new QueueAdmin(queue);
    const job = { ...newJob("low"), data: DATA, maxAttempts: 3 };
    await run(queue.enqueue(job));
    const claimOne = async () => {
      const [claimed] = (await run(queue.claim("c", ALL, 1))).jobs;
      expect(claimed?.data).toBe(DATA);
      return claimed!;
    };

    let claimed = await claimOne();
    await run(
      queue.fail({ id: job.id, attempt: claimed.attempt, error: "again", retriable: true, delayMs: 0 }),
    );
    claimed = await claimOne();
    await run(
      queue.fail({ id: job.id, attempt: claimed.attempt, error: "later", retriable: true, delayMs: 1 }),
    );
    expect((await run(queue.getJob(job.id)))?.state).toBe("delayed");
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect((await run(queue.promote())).moved).toBe(1);
    claimed = await claimOne();
    expect(await run(queue.release("c", { id: job.id, attempt: claimed.attempt }))).toBe("ok");
    expect(await run(queue.reprioritize(job.id, "urgent"))).toBe("ok");
    claimed = await claimOne();
    expect(claimed.priority).toBe("urgent");
    await run(
      queue.fail({ id: job.id, attempt: claimed.attempt, error: "gives up", retriable: false, delayMs: 0 }),
    );

    const [dead] = await run(admin.listDead());
    expect(dead?.data).toBe(DATA);
    expect(await run(admin.redriveDead("urgent", [dead!.entryId]))).toEqual(["ok"]);
    await claimOne();
  });
});
