import { afterAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { AuditEntry, CaptionTask, User } from "../../src/db/entities.js";
import { hashToken, newApiToken } from "../../src/security/tokens.js";
import { hasPostgres, type LedgerDb, openLedgerDb, seedUser } from "../support/ledger.js";
import { supervisors } from "../support/processes.js";
import { WorkerRegistry } from "../../src/queue/workers.js";
import { eventually, makeQueue } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";
import { LEDGER_JOBS } from "../support/web.js";

/**
 * The deployment beyond one machine, rehearsed on loopback: two web servers (no workers of their
 * own) and two supervisors, every one its own process, on one Redis and one PostgreSQL. Tasks go
 * in through both web servers; progress is watched through the other one; a supervisor is killed
 * mid-run; every task still completes, once.
 */
describe.skipIf(!hasPostgres)("a multi-host rehearsal", () => {
  const redis = useRedis();
  const processes = supervisors();
  let db: LedgerDb | undefined;
  afterAll(async () => {
    await processes.killAll();
    await db?.cleanup();
  });

  it("two web servers and two supervisors: tasks through either, progress from the other, a supervisor killed, all complete once", async () => {
    db = await openLedgerDb("postgres");
    const env = { REDIS_URL: redis.server.url, DATABASE_URL: db.url, RT_JOBS_MODULE: LEDGER_JOBS };
    const webs = await Promise.all(
      [0, 1].map(() => processes.spawnServe({ ...env, WORKER_MODE: "external" })),
    );
    // Short leases: a killed supervisor's jobs come back in seconds rather than half a minute.
    const workers = [0, 1].map(() =>
      processes.spawnSupervisor({ ...env, RT_LEASE_MS: "2000" }, ["--concurrency", "4"]),
    );

    const registry = new WorkerRegistry(await makeQueue(redis));
    await eventually(async () => (await run(registry.list())).length === 2, 30_000, "both supervisors");

    const users = [];
    for (let i = 0; i < 16; i++) {
      const { userId } = await seedUser(db.orm);
      const token = newApiToken();
      await db.orm.em.fork().nativeUpdate(User, { id: userId }, { apiTokenHash: hashToken(token) });
      users.push({ userId, token });
    }
    const submitted = await Promise.all(
      users.map(async (u, i) => {
        const response = await fetch(`${webs[i % 2]!.base}/caption/start`, {
          method: "POST",
          headers: { authorization: `Bearer ${u.token}`, "content-type": "application/json" },
          // Each run about 1.5 s (the test job waits delay x 0.3 s).
          body: JSON.stringify({ processing_delay: 5 }),
        });
        expect(response.status).toBe(202);
        return ((await response.json()) as { data: { task_id: string } }).data.task_id;
      }),
    );

    // Submitted through web 0, watched through web 1.
    const frames: Array<{ event: string; data: Record<string, unknown> }> = [];
    const socket = new WebSocket(`${webs[1]!.base.replace("http", "ws")}/ws?token=${users[0]!.token}`);
    socket.on("message", (data) => frames.push(JSON.parse(String(data)) as (typeof frames)[number]));
    await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
    socket.send(JSON.stringify({ event: "join_task", data: { task_id: submitted[0] } }));

    const rows = () => db!.orm.em.fork().find(CaptionTask, { id: { $in: submitted } });
    const startsBy = async (worker: number) =>
      (await db!.orm.em.fork().find(AuditEntry, { taskId: { $in: submitted }, action: "started" })).filter(
        (s) => s.actor.split(":")[2] === String(workers[worker]!.child.pid),
      ).length;
    // Killed while it runs some of them: their attempts start again in the survivor.
    await eventually(async () => (await startsBy(0)) > 0, 30_000, "the first supervisor to start work");
    workers[0]!.child.kill("SIGKILL");
    await eventually(
      async () => (await rows()).every((r) => r.status === "completed"),
      90_000,
      "every task to complete",
    );
    await eventually(
      () => frames.some((f) => f.event === "task_completed"),
      10_000,
      "the end, seen from web 1",
    );
    expect(frames.some((f) => f.event === "progress_update" && f.data.task_id === submitted[0])).toBe(true);
    socket.close();

    // Once each: one completion per task in the audit log.
    const completions = await db.orm.em
      .fork()
      .find(AuditEntry, { taskId: { $in: submitted }, action: "completed" });
    expect(completions.map((c) => c.taskId).sort()).toEqual([...submitted].sort());
    // The survivor ran what the killed one held (a supervisor's actor is system:<host>:<pid>:...).
    const [byKilled, bySurvivor] = [await startsBy(0), await startsBy(1)];
    expect(bySurvivor).toBeGreaterThan(0);
    expect(byKilled + bySurvivor).toBeGreaterThan(submitted.length);
    console.log(
      `multi-host: tasks=${submitted.length} startsByKilled=${byKilled} startsBySurvivor=${bySurvivor}`,
    );
  }, 150_000);
});
