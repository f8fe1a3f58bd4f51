import { spawn, spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { perMinute, sparkline } from "../../src/cli/info.js";
import { QueueAdmin } from "../../src/queue/admin.js";
import { CLI } from "../support/processes.js";
import { eventually, makeQueue, newJob } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

describe("ratatoskr info", () => {
  const redis = useRedis();

  /** Six urgent jobs completed, one normal failed for good, two low waiting, one paused priority. */
  const busyQueue = async () => {
    const queue = await makeQueue(redis);
    for (let i = 0; i < 6; i++) await run(queue.enqueue(newJob("urgent")));
    await run(queue.enqueue(newJob("normal", { maxAttempts: 1 })));
    for (let i = 0; i < 2; i++) await run(queue.enqueue(newJob("low")));
    const claimed = await run(queue.claim("w", ["urgent", "normal"], 7));
    for (const job of claimed.jobs) {
      if (job.priority === "urgent")
        await run(queue.complete([{ id: job.id, attempt: job.attempt, result: "{}" }]));
      else
        await run(
          queue.fail({ id: job.id, attempt: job.attempt, error: "broken", retriable: false, delayMs: 0 }),
        );
    }
    await run(new QueueAdmin(queue).pause("high"));
    return queue;
  };

  it("shows depths, rates and the last half hour per priority", async () => {
    const queue = await busyQueue();
    const history = await run(new QueueAdmin(queue).history(30));
    expect(history).toHaveLength(30);
    // In the current minute, or the one before if the clock just turned.
    expect(history.reduce((n, m) => n + m.completed.urgent, 0)).toBe(6);
    expect(history.reduce((n, m) => n + m.failed.normal, 0)).toBe(1);

    const info = spawnSync(process.execPath, [CLI, "info"], {
      env: { ...process.env, REDIS_URL: redis.server.url },
      encoding: "utf8",
    });
    expect(info.status, info.stderr).toBe(0);
    const row = (p: string) =>
      info.stdout
        .split("\n")
        .find((l) => l.startsWith(`${p} `))!
        .trim()
        .split(/\s+/);
    // priority, (paused), waiting, running, delayed, dead, done/min, failed/min, done/1h, failed/1h, spark
    expect(row("urgent").slice(0, 9)).toEqual([
      "urgent",
      "0",
      "0",
      "0",
      "0",
      expect.any(String),
      "0.0",
      "6",
      "0",
    ]);
    expect(Number(row("urgent")[5])).toBeGreaterThan(0);
    expect(row("urgent")[9]).toBe("█");
    expect(row("high")[1]).toBe("yes");
    expect(row("normal").slice(0, 5)).toEqual(["normal", "0", "0", "0", "1"]);
    expect(row("low").slice(0, 2)).toEqual(["low", "2"]);
    expect(info.stdout).toContain("total: 2 waiting, 0 running, 0 delayed, 1 dead");
    expect(info.stdout).toContain("queue backend: redis");
    expect(info.stdout).toContain("no live workers");
  });

  it("--watch redraws until Ctrl-C, then exits 0", async () => {
    await busyQueue();
    const child = spawn(process.execPath, [CLI, "info", "--watch", "--interval", "0.3"], {
      env: { ...process.env, REDIS_URL: redis.server.url },
    });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    await eventually(() => out.split("ratatoskr info ").length > 3, 20_000, "three frames");
    child.kill("SIGINT");
    expect(await exited).toBe(0);
  });

  it("refuses a bad interval with a clear line", () => {
    const bad = spawnSync(process.execPath, [CLI, "info", "--watch", "--interval", "soon"], {
      env: { ...process.env, REDIS_URL: redis.server.url },
      encoding: "utf8",
    });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("--interval takes seconds");
  });
});

describe("info's arithmetic", () => {
  it("draws a sparkline relative to the busiest minute, blanks for none", () => {
    expect(sparkline([0, 1, 2, 4, 8])).toBe(" ▁▂▄█");
    expect(sparkline([0, 0])).toBe("  ");
  });

  it("counts the minute under way only for the part that has passed", () => {
    const minute = (n: number) => ({
      minute: 0,
      completed: { urgent: n, high: 0, normal: 0, low: 0 },
      failed: { urgent: 0, high: 0, normal: 0, low: 0 },
      retried: { urgent: 0, high: 0, normal: 0, low: 0 },
      dead: { urgent: 0, high: 0, normal: 0, low: 0 },
    });
    const history = [minute(10), minute(10), minute(10), minute(10), minute(5)];
    // 45 completions over four minutes and a half.
    expect(perMinute(history, 30_000, (m) => m.completed.urgent)).toBe(10);
  });
});
