import { afterEach, describe, expect, it } from "vitest";
import { TaskService } from "../../src/tasks/service.js";
import { type LedgerDb, openLedgerDb } from "../support/ledger.js";
import { supervisors } from "../support/processes.js";
import { eventually, makeQueue } from "../support/queue.js";
import { WorkerRegistry } from "../../src/queue/workers.js";
import { run, useRedis } from "../support/redis.js";
import {
  countByStatus,
  FAULT_JOBS,
  report,
  runLog,
  runsByTask,
  seedUsers,
  submitOne,
  verdict,
} from "./support.js";

describe("faults: a worker process killed", () => {
  const redis = useRedis();
  const processes = supervisors();
  let db: LedgerDb | undefined;

  afterEach(async () => {
    await processes.killAll();
    await db?.cleanup();
    db = undefined;
  });

  // The victim claims in its main thread, or in its worker threads (consumers named per thread);
  // the survivor in its main thread either way.
  it.each(["main", "threads"] as const)(
    "(d) kill -9 of a supervisor mid-job, claiming in %s: its tasks complete in the other one, each once",
    async (claimIn) => {
      db = await openLedgerDb("sqlite");
      const log = runLog();
      const env = {
        REDIS_URL: redis.server.url,
        DATABASE_URL: db.url,
        RT_JOBS_MODULE: FAULT_JOBS,
        RT_LEASE_MS: "1500",
        RT_TEST_LOG: log,
      };
      const victim = processes.spawnSupervisor({ ...env, RT_CLAIM_IN: claimIn }, ["--concurrency", "10"]);
      const survivor = processes.spawnSupervisor(env, ["--concurrency", "10"]);
      const queue = await makeQueue(redis);
      await eventually(
        async () => (await run(new WorkerRegistry(queue).list())).length === 2,
        30_000,
        "both up",
      );
      const service = new TaskService(db.orm, queue);
      const users = await seedUsers(db.orm, 20);
      const ids = (await Promise.all(users.map((u) => submitOne(service, u, "normal", 4)))).map(
        (s) => s.taskId,
      );
      await eventually(async () => (await countByStatus(db!.orm, ids)).running === 20, 30_000, "20 running");
      // Which of them the victim holds: its consumers are named after its pid.
      const owners = await Promise.all(ids.map(async (id) => (await run(queue.getJob(id)))?.owner ?? ""));
      const held = owners.filter((o) => o.includes(`:${victim.child.pid}:`)).length;
      expect(held).toBeGreaterThan(0);
      const killedAt = Date.now();
      victim.child.kill("SIGKILL");
      await victim.exited;
      await eventually(
        async () => (await countByStatus(db!.orm, ids)).completed === 20,
        60_000,
        "every task, the killed process's ones elsewhere",
      );
      const result = await verdict(db.orm, ids, log);
      const attempts = [...runsByTask(log).values()];
      report(`(d, the victim claiming in ${claimIn})`, {
        recoveredAfterMs: Date.now() - killedAt,
        heldByVictim: held,
        rerun: attempts.filter((a) => a[0] === 2).length,
        ...result,
      });
      expect(result).toMatchObject({ tasks: 20, completed: 20, lost: 0, duplicates: 0, unbacked: 0 });
      // The killed process's tasks never finished there; each ran to the end once, as attempt 2.
      expect(attempts.filter((a) => a.length === 1 && a[0] === 2)).toHaveLength(held);
      expect(survivor.output()).toContain("reclaimed");
    },
    120_000,
  );
});
