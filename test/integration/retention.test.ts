import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditEntry, CaptionTask } from "../../src/db/entities.js";
import { auditColumns } from "../../src/tasks/audit.js";
import { type LedgerDb, openLedgerDb, seedUser } from "../support/ledger.js";
import { CLI } from "../support/processes.js";

const DAY = 86_400_000;

describe("ratatoskr tasks purge", () => {
  let db: LedgerDb;
  beforeAll(async () => {
    db = await openLedgerDb("sqlite");
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [CLI, "tasks", "purge", ...args], {
      env: { ...process.env, DATABASE_URL: db.url },
      encoding: "utf8",
    });

  it("deletes the tasks that ended before the cutoff, never an active one; the audit log stays", async () => {
    const em = db.orm.em.fork();
    const make = async (status: CaptionTask["status"], endedDaysAgo: number | null, createdDaysAgo = 40) => {
      const { userId, connectionId } = await seedUser(db.orm);
      const id = crypto.randomUUID();
      em.create(CaptionTask, {
        id,
        userId,
        platformConnectionId: connectionId,
        status,
        priority: "normal",
        settingsJson: "{}",
        createdAt: new Date(Date.now() - createdDaysAgo * DAY),
        completedAt: endedDaysAgo === null ? null : new Date(Date.now() - endedDaysAgo * DAY),
        ...auditColumns("created", "test"),
      });
      await em.flush();
      return id;
    };
    const old = [await make("completed", 35), await make("failed", 31), await make("cancelled", 40)];
    const recent = [await make("completed", 2), await make("failed", 29)];
    const active = [await make("queued", null), await make("running", null)];
    const remaining = async () => (await db.orm.em.fork().find(CaptionTask, {})).map((t) => t.id).sort();

    const dry = cli("--older-than", "30d", "--dry-run");
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/^would delete 3 tasks that ended before .* \(dry run: nothing changed\)/);
    expect(await remaining()).toEqual([...old, ...recent, ...active].sort());

    const real = cli("--older-than", "30d");
    expect(real.status, real.stderr).toBe(0);
    expect(real.stdout).toMatch(/^deleted 3 tasks that ended before /);
    expect(await remaining()).toEqual([...recent, ...active].sort());
    expect(cli("--older-than", "30d").stdout).toMatch(/^deleted 0 tasks/);
    // What happened to them stays answerable.
    const trail = await db.orm.em.fork().find(AuditEntry, { taskId: { $in: old } });
    expect(trail.map((a) => a.action)).toEqual(["created", "created", "created"]);
  });

  it("refuses an age it cannot read, with one clear line", () => {
    for (const bad of [[], ["--older-than", "30"], ["--older-than", "soon"]]) {
      const refused = cli(...bad);
      expect(refused.status).toBe(2);
      expect(refused.stderr).toContain("tasks purge needs --older-than with days, hours or minutes");
    }
  });
});
