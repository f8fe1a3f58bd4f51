import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Effect } from "effect";
import { loadConfig } from "../../config/schema.js";
import { isPriority, type Priority } from "../domain/priority.js";
import { bundleThreadCode } from "../pool/thread-bundle.js";
import { writeCodeCache } from "../pool/code-cache.js";
import { QueueAdmin } from "../queue/admin.js";
import { jobsModuleUrl } from "../runtime.js";
import { WorkerRegistry } from "../queue/workers.js";
import { connect } from "./connect.js";
import { AccountsUsageError, addPlatform, createUser } from "./accounts.js";
import { runDb } from "./db.js";
import { runDemo } from "./demo.js";
import { runInfo } from "./info.js";
import { KeysUsageError, runKeys } from "./keys.js";
import { runWatch, WatchUsageError } from "./watch.js";
import { runServe } from "./serve.js";
import { runSupervisor } from "./supervisor.js";
import { runTasks, TasksUsageError } from "./tasks.js";
import { formatAlerts, formatStats, formatTable, formatWorkers } from "./table.js";

const USAGE = `ratatoskr <command>

  demo [--no-wait]              the whole system on the embedded defaults: users submit caption
                                tasks, progress bars, the captions; then serves until Ctrl-C
                                (--no-wait: exits once every task ended, 0 if all completed)
  serve                         the HTTP API on PORT (8000), with workers per WORKER_MODE
  supervisor [--queues urgent,high] [--concurrency N]
                                a worker process: dispatchers, thread pool, background actors
  db migrate | db status        apply / list the database ledger's migrations
  threads bundle                build the worker threads' code for RT_JOBS_MODULE now, as every
                                start does, and its code cache (for an install the service may
                                not write to)
  users create <name> --role admin|moderator|reviewer|viewer [--email E]
                                a user; prints its API token (shown once)
  platforms add --user <name> --type mastodon|pixelfed --url <instance url> --token <access token>
                [--name N] [--default]   a platform connection (token stored encrypted)
  stats                         queue depth, last-hour counts per priority, live workers, alerts
  watch <task id> [--url U] [--token T]
                                follow one task over the progress socket until it ends
                                (RT_URL, RT_TOKEN); exit 0 completed, 1 failed or cancelled
  info [--watch] [--interval S] depths, rates per minute, the last 30 minutes and workers;
                                --watch redraws every S seconds (2) until Ctrl-C
  alerts [--limit N]            operator alerts: Redis down and back, restarts, memory pressure
  pause <priority>              stop claiming from a priority
  resume <priority>             claim from it again
  clear <priority>              cancel every waiting job of a priority
  dead list [--priority P] [--limit N]
  dead redrive <priority> <entry id>... | --all
  dead purge <priority> [<entry id>...]
  user active <user id>         the user's active task
  user release <user id>        free the user's slot (the task itself is not touched)
  tasks migrate-to-redis [--dry-run]
                                database-queued tasks into the streams; ends a rollback
  tasks rollback-to-db [--dry-run]
                                stop taking from Redis; its waiting tasks to the database queue
  tasks purge --older-than 30d [--dry-run]
                                delete task rows that ended before then (the audit log stays)
  keys generate                 print a new encryption key (for RT_ENCRYPTION_KEY)
  keys rotate [--dry-run]       re-encrypt stored access tokens that older keys (listed in
                                RT_ENCRYPTION_OLD_KEYS) sealed, with RT_ENCRYPTION_KEY

Environment: REDIS_URL (admin commands and supervisor need it), RT_PROFILE, WORKER_MODE,
RT_JOBS_MODULE, RT_SHUTDOWN_MS, ... (every variable: config/schema.ts)`;

class UsageError extends Error {}

const priorityArg = (value: string | undefined): Priority => {
  if (!isPriority(value))
    throw new UsageError(
      `expected a priority (urgent, high, normal, low), got ${JSON.stringify(value ?? "")}`,
    );
  return value;
};

const admin = async <A>(use: (admin: QueueAdmin) => Effect.Effect<A, unknown>): Promise<A> => {
  const c = await connect({ allowPrivate: false, name: "ratatoskr-cli" });
  try {
    return await Effect.runPromise(use(new QueueAdmin(c.queue)));
  } finally {
    await c.close();
  }
};

const print = (value: unknown) =>
  process.stdout.write(`${typeof value === "string" ? value : JSON.stringify(value, null, 2)}\n`);

export const main = async (argv: string[]): Promise<number> => {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      priority: { type: "string" },
      limit: { type: "string" },
      all: { type: "boolean" },
      "no-wait": { type: "boolean" },
      queues: { type: "string" },
      role: { type: "string" },
      email: { type: "string" },
      user: { type: "string" },
      type: { type: "string" },
      url: { type: "string" },
      token: { type: "string" },
      name: { type: "string" },
      default: { type: "boolean" },
      concurrency: { type: "string" },
      "dry-run": { type: "boolean" },
      watch: { type: "boolean" },
      "older-than": { type: "string" },
      interval: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [command, sub, ...rest] = positionals;
  if (values.help || command === undefined) {
    print(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  switch (command) {
    case "demo":
      return runDemo({ wait: values["no-wait"] !== true });
    case "serve":
      return runServe();
    case "supervisor":
      return runSupervisor({
        ...(values.queues === undefined ? {} : { queues: values.queues }),
        ...(values.concurrency === undefined ? {} : { concurrency: values.concurrency }),
      });
    case "db":
      return runDb(sub, print);
    case "threads": {
      if (sub !== "bundle") throw new UsageError(`unknown threads command ${JSON.stringify(sub ?? "")}`);
      const registry = jobsModuleUrl(loadConfig());
      const bundle = await bundleThreadCode(registry);
      print(`worker threads' code for ${registry}: ${fileURLToPath(bundle)}`);
      const cache = await writeCodeCache(registry, bundle);
      print(
        cache === undefined
          ? "no code cache: the threads compile it as they load it"
          : `its code cache: ${cache}`,
      );
      return 0;
    }
    case "users": {
      if (sub !== "create") throw new UsageError(`unknown users command ${JSON.stringify(sub ?? "")}`);
      const token = await createUser(rest[0], {
        ...(values.role === undefined ? {} : { role: values.role }),
        ...(values.email === undefined ? {} : { email: values.email }),
      });
      print(token);
      return 0;
    }
    case "platforms": {
      if (sub !== "add") throw new UsageError(`unknown platforms command ${JSON.stringify(sub ?? "")}`);
      const { id, isDefault } = await addPlatform(values);
      print(`platform connection ${id} added${isDefault ? " (default)" : ""}`);
      return 0;
    }
    case "stats": {
      const [stats, workers, mode, alerts] = await admin((a) =>
        Effect.all([a.stats(), new WorkerRegistry(a.queue).list(), a.backendMode(), a.alerts(5)]),
      );
      print(
        `queue backend: ${mode === "database" ? "database (held by tasks rollback-to-db; undo with tasks migrate-to-redis)" : "redis"}\n`,
      );
      print(formatStats(stats));
      print(`\n${formatWorkers(workers)}`);
      print(`\nrecent alerts (ratatoskr alerts for more):\n${formatAlerts(alerts)}`);
      return 0;
    }
    case "info": {
      const seconds = values.interval === undefined ? 2 : Number(values.interval);
      if (!Number.isFinite(seconds) || seconds < 0.2 || seconds > 3600)
        throw new UsageError("--interval takes seconds, 0.2 to 3600");
      return runInfo({ watch: values.watch === true, intervalMs: seconds * 1000 }, (text) =>
        process.stdout.write(text),
      );
    }
    case "alerts": {
      const limit = values.limit === undefined ? 20 : Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1)
        throw new UsageError("--limit takes a positive whole number");
      print(formatAlerts(await admin((a) => a.alerts(limit))));
      return 0;
    }
    case "pause":
    case "resume": {
      const p = priorityArg(sub);
      const changed = await admin((a) => (command === "pause" ? a.pause(p) : a.resume(p)));
      print(`${p}: ${command === "pause" ? "paused" : "resumed"}${changed ? "" : " (it already was)"}`);
      return 0;
    }
    case "clear": {
      const p = priorityArg(sub);
      // The ledger follows at the reconciler's next pass (it settles rows whose job ended).
      print(`${p}: ${(await admin((a) => a.clear(p))).length} waiting jobs cancelled`);
      return 0;
    }
    case "dead":
      return dead(sub, rest, values);
    case "tasks":
      return runTasks(sub, { dryRun: values["dry-run"] === true, olderThan: values["older-than"] }, print);
    case "watch":
      return runWatch(sub, { url: values.url, token: values.token }, print);
    case "keys":
      return runKeys(sub, { dryRun: values["dry-run"] === true }, print);
    case "user": {
      const [userId] = rest;
      if (!userId) throw new UsageError("expected a user id");
      if (sub === "active") print((await admin((a) => a.activeTaskOf(userId))) ?? "no active task");
      else if (sub === "release")
        print((await admin((a) => a.releaseUser(userId))) ? "released" : "no slot was held");
      else throw new UsageError(`unknown user command ${JSON.stringify(sub ?? "")}`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
};

const dead = async (
  sub: string | undefined,
  rest: string[],
  values: { priority?: string; limit?: string; all?: boolean },
) => {
  if (sub === "list") {
    const limit = values.limit === undefined ? 50 : Number(values.limit);
    if (!Number.isInteger(limit) || limit < 1) throw new UsageError("--limit takes a positive whole number");
    const options =
      values.priority === undefined ? { limit } : { limit, priority: priorityArg(values.priority) };
    const letters = await admin((a) => a.listDead(options));
    print(
      formatTable(
        ["priority", "entry", "task", "attempt", "reason"],
        letters.map((d) => [d.priority, d.entryId, d.taskId || "-", d.attempt, d.reason]),
      ),
    );
    return 0;
  }
  const p = priorityArg(rest[0]);
  const ids = rest.slice(1);
  if (sub === "redrive") {
    const outcomes = await admin((a) =>
      values.all
        ? a.listDead({ priority: p, limit: 10_000 }).pipe(
            Effect.flatMap((all) =>
              a.redriveDead(
                p,
                all.map((d) => d.entryId),
              ),
            ),
          )
        : a.redriveDead(p, ids),
    );
    print(`${outcomes.filter((o) => o === "ok").length} of ${outcomes.length} redriven`);
    for (const o of outcomes)
      if (o !== "ok")
        print(`  not redriven: ${typeof o === "string" ? o : `user has active task ${o.activeTaskId}`}`);
    return 0;
  }
  if (sub === "purge") {
    print(`${await admin((a) => a.purgeDead(p, ids.length > 0 ? ids : undefined))} dead letters purged`);
    return 0;
  }
  throw new UsageError(`unknown dead command ${JSON.stringify(sub ?? "")}`);
};

/** Runs the command line and exits with its status: what `bin/ratatoskr.js` calls. */
export const runCli = (argv: string[]): void => {
  // A reader that went away (`ratatoskr demo | head`) ends the command, not with a crash.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(0);
    throw error;
  });
  main(argv).then(
    (code) => process.exit(code),
    (error: unknown) => {
      const usage =
        error instanceof UsageError ||
        error instanceof AccountsUsageError ||
        error instanceof TasksUsageError ||
        error instanceof KeysUsageError ||
        error instanceof WatchUsageError;
      process.stderr.write(
        `ratatoskr: ${error instanceof Error ? error.message : String(error)}\n${usage ? "try: ratatoskr --help\n" : ""}`,
      );
      process.exit(usage ? 2 : 1);
    },
  );
};

// Run directly (`tsx src/cli/main.ts`, as `npm run demo` does). The bin script calls runCli
// itself: under npx its path is a symlink in `.bin`, which no check on argv[1] would recognise.
if (import.meta.url === `file://${process.argv[1]}`) runCli(process.argv.slice(2));
