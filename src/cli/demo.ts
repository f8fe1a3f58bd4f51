import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { MikroORM } from "@mikro-orm/core";
import { Effect, Either } from "effect";
import { profiles } from "../../config/profiles.js";
import { type Config, loadConfig } from "../../config/schema.js";
import { CaptionTask, Image, PlatformConnection } from "../db/entities.js";
import { migrate, openDatabase } from "../db/orm.js";
import { PRIORITIES, type Priority } from "../domain/priority.js";
import { plainLogger } from "../log.js";
import { QueueAdmin } from "../queue/admin.js";
import { type RuntimeHandle, start } from "../runtime.js";
import { loadFieldKey } from "../security/field-crypto.js";
import { TaskService } from "../tasks/service.js";
import { startWebServer, type WebServer } from "../web/server.js";
import { type SampleAccount, sampleImages, startSampleInstance } from "../demo/sample-instance.js";
import { type DemoUser, seedDemoUser } from "../demo/seed.js";
import { ProgressView, type TaskLine } from "../demo/progress-view.js";
import { untilSignalled } from "./signals.js";

/** Who submits what: several users, every priority, a few posts each. */
const CAST: ReadonlyArray<{ name: string; priority: Priority; posts: number }> = [
  { name: "ann", priority: "low", posts: 2 },
  { name: "bo", priority: "normal", posts: 3 },
  { name: "cy", priority: "urgent", posts: 2 },
  { name: "dee", priority: "high", posts: 3 },
  { name: "eli", priority: "normal", posts: 1 },
  { name: "fay", priority: "low", posts: 2 },
];

const ENDED = new Set(["completed", "failed", "cancelled"]);

/** How long the demo waits for its tasks before it calls the run a failure. */
const PATIENCE_MS = 5 * 60_000;

/**
 * `ratatoskr demo`: the whole system on the embedded defaults. A fresh SQLite ledger in a
 * temporary directory (or DATABASE_URL), a private redis-server (or REDIS_URL), the offline
 * `basic` engine (unless CAPTION_ENGINE says otherwise), and a local post source serving the
 * sample photos in demo/images. Users submit caption tasks at mixed priorities over the real
 * task service; their progress shows as bars; the captions are printed; then it serves the API
 * until Ctrl-C, or with `--no-wait` stops (exit 0 when every task completed).
 */
export const runDemo = async (options: { wait: boolean }): Promise<number> => {
  const say = (text: string) => process.stdout.write(`${text}\n`);
  const { config, scratch } = demoConfig();
  const sample = await startSampleInstance(accountsFor(CAST));
  let runtime: RuntimeHandle | undefined;
  let web: WebServer | undefined;
  const stop = async () => {
    web?.close();
    await runtime?.stop({ graceful: true });
    await sample.close();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  };
  // Until it serves (untilSignalled takes over then), Ctrl-C still stops everything it started.
  const interrupted = () => void stop().finally(() => process.exit(130));
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  const serving = () => {
    process.off("SIGINT", interrupted);
    process.off("SIGTERM", interrupted);
  };
  try {
    await migrated(config);
    runtime = await start({
      config,
      groups: profiles[config.RT_PROFILE].groups,
      ledger: true,
      allowPrivateRedis: true,
    });
    const orm = runtime.orm!;
    say(
      `Ledger: ${config.DATABASE_URL ?? join(config.RT_DATA_DIR, "ratatoskr.sqlite")}; Redis: ${
        config.REDIS_URL ? config.REDIS_URL : `a private redis-server (${runtime.redisUrl})`
      }; posts from ${sample.url}; engine: ${config.CAPTION_ENGINE ?? "basic"}`,
    );
    const tasks = new TaskService(orm, runtime.queue, { health: runtime.health, metrics: runtime.metrics });
    web = await serve(config, runtime, tasks);
    const cast = await seedCast(orm, config, sample.url);

    // Submitted while every priority is paused, so the workers meet a full queue and the
    // strict order shows: urgent first, low last.
    const admin = new QueueAdmin(runtime.queue);
    const submitted: Array<{ label: string; priority: Priority; taskId: string }> = [];
    try {
      for (const p of PRIORITIES) await Effect.runPromise(admin.pause(p));
      for (const [i, member] of CAST.entries()) {
        const result = await tasks.submit({
          userId: cast.users[i]!.userId,
          priority: member.priority,
          settings: { max_posts_per_run: 10, processing_delay: 0.5 },
        });
        if (Either.isLeft(result)) throw new Error(`submit for ${member.name}: ${result.left.message}`);
        submitted.push({ label: member.name, priority: member.priority, taskId: result.right.taskId });
      }
      const again = await tasks.submit({ userId: cast.users[0]!.userId, priority: "urgent" });
      say(
        Either.isLeft(again)
          ? `A second task for ${CAST[0]!.name} is refused while the first is active: ${again.left.message}\n`
          : `A second task for ${CAST[0]!.name} was accepted; it should not have been\n`,
      );
      say(`Submitted ${submitted.length} tasks with the queue paused; resuming: urgent first, low last.\n`);
    } finally {
      // Never leave a Redis paused (REDIS_URL may name a shared one).
      for (const p of PRIORITIES) await Effect.runPromise(Effect.ignore(admin.resume(p)));
    }

    const rows = await watch(orm, submitted, new ProgressView(process.stdout));
    const completed = rows.filter((r) => r.status === "completed").length;
    say(`\n${completed} of ${rows.length} tasks completed. The captions, for review before posting:`);
    for (const [i, member] of CAST.entries()) await printCaptions(orm, cast.users[i]!, member.name, say);

    const base = `http://127.0.0.1:${web.port}`;
    const token = cast.admin.token;
    say(`\nThe dashboard: ${base}/admin (sign in with this admin token: ${token})`);
    say(`  curl -H "Authorization: Bearer ${token}" ${base}/admin/api/rq/queue-stats`);
    say(`  progress socket: ${base.replace("http", "ws")}/ws?token=${token}`);
    say(`  metrics: ${base}/metrics`);
    say(`  in a terminal: REDIS_URL=${runtime.redisUrl} npx ratatoskr info --watch`);
    say(`\nAs ${CAST[0]!.name} (the README's tour), in another terminal:`);
    say(`  export RT_URL=${base} RT_TOKEN=${cast.users[0]!.token}`);
    serving();
    if (!options.wait) {
      await stop();
      return completed === rows.length ? 0 : 1;
    }
    say("Serving until Ctrl-C.");
    return await untilSignalled({ stop, done: runtime.done, shutdownMs: config.RT_SHUTDOWN_MS });
  } catch (error) {
    serving();
    await stop().catch(() => {});
    throw error;
  }
};

/**
 * The demo's settings: the environment's, over embedded defaults of its own. A fresh data
 * directory, removed at the end (so every run starts clean; the worker threads read it from the
 * environment too),
 * the offline engine, and quiet logs so the progress bars stay readable.
 */
const demoConfig = (): { config: Config; scratch: string | undefined } => {
  let scratch: string | undefined;
  if (!process.env.DATABASE_URL && !process.env.RT_DATA_DIR) {
    scratch = mkdtempSync(join(tmpdir(), "ratatoskr-demo-"));
    process.env.RT_DATA_DIR = scratch;
  }
  process.env.CAPTION_ENGINE ??= "basic";
  process.env.RT_LOG_LEVEL ??= "warning";
  return { config: loadConfig(), scratch };
};

const migrated = async (config: Config) => {
  const orm = await openDatabase({ url: config.DATABASE_URL, dataDir: config.RT_DATA_DIR });
  try {
    await migrate(orm);
  } finally {
    await orm.close();
  }
};

/** Each member's sample account: their posts carry the sample photos, one or two per post. */
const accountsFor = (cast: typeof CAST): SampleAccount[] => {
  const photos = sampleImages();
  if (photos.length === 0) throw new Error("demo/images holds no sample photos");
  let next = 0;
  const photo = () => photos[next++ % photos.length]!;
  return cast.map((member, i) => ({
    id: String(100 + i),
    username: member.name,
    token: `sample-token-${member.name}`,
    posts: Array.from({ length: member.posts }, (_, p) => (p % 2 === 0 ? [photo()] : [photo(), photo()])),
  }));
};

const seedCast = async (orm: MikroORM, config: Config, instanceUrl: string) => {
  const key = loadFieldKey(config.RT_ENCRYPTION_KEY, config.RT_DATA_DIR, () => {});
  // A database that already holds users (DATABASE_URL) keeps them: the demo's get a suffix.
  const tag = config.DATABASE_URL ? `-${Date.now().toString(36)}` : "";
  const accounts = accountsFor(CAST);
  const users: DemoUser[] = [];
  for (const account of accounts)
    users.push(
      await seedDemoUser(orm, key, {
        username: `${account.username}${tag}`,
        role: "viewer",
        sample: { instanceUrl, account },
      }),
    );
  const admin = await seedDemoUser(orm, key, { username: `admin${tag}`, role: "admin" });
  return { users, admin };
};

const serve = async (config: Config, runtime: RuntimeHandle, tasks: TaskService): Promise<WebServer> => {
  const options = {
    orm: runtime.orm!,
    tasks,
    queue: runtime.queue,
    metrics: runtime.metrics,
    runtime: () => runtime.status(),
    logger: plainLogger(config.RT_LOG_FORMAT ?? "pretty", config.RT_LOG_LEVEL, { actor: "http" }),
    host: "127.0.0.1",
    bodyLimitBytes: config.RT_HTTP_BODY_LIMIT_KB * 1024,
  };
  // PORT if it is free; another demo or server may hold it, and any port will do.
  return startWebServer({ ...options, port: config.PORT }).catch(() =>
    startWebServer({ ...options, port: 0 }),
  );
};

/** Redraws the tasks' progress from the ledger until every one has ended. */
const watch = async (
  orm: MikroORM,
  submitted: ReadonlyArray<{ label: string; priority: Priority; taskId: string }>,
  view: ProgressView,
): Promise<CaptionTask[]> => {
  const deadline = Date.now() + PATIENCE_MS;
  for (;;) {
    const rows = await orm.em.fork().find(CaptionTask, { id: { $in: submitted.map((s) => s.taskId) } });
    const byId = new Map(rows.map((r) => [r.id, r]));
    const lines: TaskLine[] = submitted.map((s) => {
      const row = byId.get(s.taskId);
      return {
        label: s.label,
        priority: s.priority,
        status: row?.status ?? "?",
        percent: row?.progressPercent ?? 0,
        step:
          row?.status === "failed"
            ? `Failed: ${row.errorMessage ?? ""}`
            : row?.currentStep || (row?.status === "queued" ? "Waiting in the queue" : ""),
      };
    });
    view.render(lines);
    if (rows.length === submitted.length && rows.every((r) => ENDED.has(r.status))) return rows;
    if (Date.now() > deadline)
      throw new Error(`the tasks did not end within ${PATIENCE_MS / 60_000} minutes`);
    await sleep(200);
  }
};

const printCaptions = async (orm: MikroORM, user: DemoUser, name: string, say: (text: string) => void) => {
  const em = orm.em.fork();
  const connections = await em.find(PlatformConnection, { userId: user.userId }, { fields: ["id"] });
  const images = await em.find(
    Image,
    { platformConnectionId: { $in: connections.map((c) => c.id) } },
    { orderBy: { id: "asc" } },
  );
  say(`  ${name}:`);
  if (images.length === 0) say("    (no captions)");
  for (const image of images) {
    const file = image.imageUrl.split("/").pop();
    say(`    ${file}: ${image.generatedCaption ?? "(none)"} [quality ${image.captionQualityScore ?? "?"}]`);
  }
};
