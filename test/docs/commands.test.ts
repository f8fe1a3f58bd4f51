import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { QueueAdmin } from "../../src/queue/admin.js";
import { main } from "../../src/cli/main.js";
import { newKeyMaterial } from "../../src/security/field-crypto.js";
import { ALL, makeQueue, newJob } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DOCS = ["README.md", "SECURITY.md", ...readdirSync(join(ROOT, "docs")).map((f) => `docs/${f}`)].filter(
  (f) => f.endsWith(".md"),
);

/** Commands whose second word names what they do (`dead list`), and the one-word ones. */
const WITH_SUB = new Set(["db", "users", "platforms", "dead", "user", "tasks", "keys", "threads"]);
const ONE_WORD = new Set([
  "serve",
  "supervisor",
  "demo",
  "watch",
  "info",
  "stats",
  "alerts",
  "pause",
  "resume",
  "clear",
]);

/** Every `ratatoskr <command> [<sub>]` the docs mention, in code blocks and in the text. */
const documentedCommands = (): Set<string> => {
  const found = new Set<string>();
  for (const file of DOCS) {
    const text = readFileSync(join(ROOT, file), "utf8");
    // Words may wrap onto the next line in prose (`ratatoskr dead\nlist`); `pause|resume` is two.
    for (const m of text.matchAll(/\bratatoskr\s+([a-z][a-z|-]*)(?:\s+([a-z][a-z|-]*))?/g)) {
      for (const command of m[1]!.split("|")) {
        if (!ONE_WORD.has(command) && !WITH_SUB.has(command)) continue;
        const subs = WITH_SUB.has(command) ? (m[2] ?? "").split("|").filter(Boolean) : [];
        // A two-word command named alone (`db|users|...` in a list) is no command to type.
        if (!WITH_SUB.has(command)) found.add(command);
        for (const sub of subs) found.add(`${command} ${sub}`);
      }
    }
  }
  return found;
};

/** The CLI invocations in the other test files: `[CLI, "tasks", "purge"`, `cli("db", "migrate"`, ... */
const invokedByTests = (): Set<string> => {
  const found = new Set<string>();
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
    );
  for (const file of walk(join(ROOT, "test"))) {
    const text = readFileSync(file, "utf8");
    const calls =
      /(?:\[CLI, |spawnCli\(\[|\bcli\((?:\{[^}]*\}|\w+)?,? ?|runCommand\()"([a-z-]+)"(?:, "([a-z-]+)")?/g;
    for (const m of text.matchAll(calls)) {
      const [, command, sub] = m;
      found.add(WITH_SUB.has(command!) && sub ? `${command} ${sub}` : command!);
    }
  }
  return found;
};

/**
 * Every command the docs tell an operator to type is run by a test. This file runs the admin
 * commands no other test spawns (in process, through the same `main` the binary calls), against
 * a real Redis and a real SQLite ledger; then it checks that each command the docs mention is run
 * here or by another test, so a documented command without a test fails the suite.
 */
describe("the documented commands", () => {
  const redis = useRedis();
  const dataDir = mkdtempSync(join(tmpdir(), "rt-commands-"));
  const out: string[] = [];
  beforeAll(async () => {
    vi.stubEnv("REDIS_URL", redis.server.url);
    vi.stubEnv("RT_DATA_DIR", dataDir);
    vi.stubEnv("DATABASE_URL", "");
    vi.stubEnv("RT_ENCRYPTION_KEY", newKeyMaterial());
    vi.stubEnv("RT_LOG_LEVEL", "error");
  });
  /** Runs `ratatoskr <argv>` in this process; returns its exit status and what it printed. */
  const runCommand = async (...argv: string[]) => {
    out.length = 0;
    const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      out.push(String(chunk));
      return true;
    });
    try {
      const status = await main(argv);
      return { status, text: out.join("") };
    } finally {
      write.mockRestore();
    }
  };

  it("runs the queue admin commands against a real Redis", async () => {
    expect((await runCommand("db", "migrate")).status).toBe(0);
    const queue = await makeQueue(redis);
    const lowJob = newJob("low", { userId: "u-7" });
    await run(queue.enqueue(lowJob));
    const doomed = newJob("high");
    await run(queue.enqueue(doomed));
    const [claimed] = (await run(queue.claim("c", ["high"], 1))).jobs;
    await run(queue.fail({ ...claimed!, error: "bad input", retriable: false, delayMs: 0 }));

    const stats = await runCommand("stats");
    expect(stats.status).toBe(0);
    expect(stats.text).toContain("queue backend: redis");
    expect((await runCommand("alerts", "--limit", "5")).status).toBe(0);

    expect((await runCommand("user", "active", "u-7")).text.trim()).toBe(lowJob.id);
    expect((await runCommand("pause", "low")).text.trim()).toBe("low: paused");
    expect((await runCommand("resume", "low")).text.trim()).toBe("low: resumed");

    const dead = await runCommand("dead", "list", "--priority", "high");
    expect(dead.text).toContain(doomed.id);
    expect(dead.text).toContain("bad input");
    const [letter] = await run(new QueueAdmin(queue).listDead({ priority: "high" }));
    expect((await runCommand("dead", "redrive", "high", letter!.entryId)).status).toBe(0);
    const [again] = (await run(queue.claim("c", ["high"], 1))).jobs;
    expect(again?.id).toBe(doomed.id);
    await run(queue.fail({ ...again!, error: "still bad", retriable: false, delayMs: 0 }));
    expect((await runCommand("dead", "purge", "high")).text).toContain("1 dead letters purged");

    expect((await runCommand("user", "release", "u-7")).text.trim()).toBe("released");
    expect((await runCommand("clear", "low")).text.trim()).toBe("low: 1 waiting jobs cancelled");
    expect((await run(queue.claim("c", ALL, 5))).jobs).toEqual([]);

    const rollback = await runCommand("tasks", "rollback-to-db", "--dry-run");
    expect(rollback.status).toBe(0);
    expect((await runCommand("--help")).text).toContain("ratatoskr <command>");
  }, 60_000);

  it("leaves no command of the docs without a test that runs it", () => {
    const documented = documentedCommands();
    const covered = invokedByTests();
    expect(documented.size).toBeGreaterThan(15);
    const missing = [...documented].filter((c) => !covered.has(c)).sort();
    expect(missing, `documented but run by no test: ${missing.join(", ")}`).toEqual([]);
  });
});
