import { Either, ParseResult, Schema } from "effect";
import { redactText } from "../src/log.js";
import { parseRedisUrl } from "../src/redis/redis-url.js";

const KEY_EXPECTED = "expected 32 bytes, base64-encoded (`ratatoskr keys generate` prints one)";
const isKeyMaterial = (text: string): true | string =>
  /^[A-Za-z0-9+/]{43}=?$/.test(text) && Buffer.from(text, "base64").length === 32 ? true : KEY_EXPECTED;

const IntFromEnv = (min: number, max: number) =>
  Schema.NumberFromString.pipe(Schema.int(), Schema.between(min, max));

/**
 * The one configuration schema: every environment variable the runtime reads, its default and
 * its bounds (their meanings: DESCRIPTIONS below). A bad value stops start-up with one line
 * naming the variable.
 */
export const EnvSchema = Schema.Struct({
  REDIS_URL: Schema.optional(
    Schema.String.pipe(
      Schema.filter((url) => {
        try {
          parseRedisUrl(url);
          return true;
        } catch (error) {
          return (error as Error).message;
        }
      }),
    ),
  ),
  REDIS_TLS_CA: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  REDIS_SENTINEL_PASSWORD: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  RT_PREFIX: Schema.optionalWith(Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_.:-]{1,32}$/)), {
    default: () => "rt",
  }),
  RT_QUEUE: Schema.optionalWith(Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_.-]{1,64}$/)), {
    default: () => "caption",
  }),
  RT_LEASE_MS: Schema.optionalWith(IntFromEnv(1_000, 3_600_000), { default: () => 30_000 }),
  RT_MAX_RECLAIMS: Schema.optionalWith(IntFromEnv(0, 100), { default: () => 3 }),
  RT_DEAD_LETTER_MAX: Schema.optionalWith(IntFromEnv(10, 10_000_000), { default: () => 10_000 }),
  RT_KEEP_COMPLETED_S: Schema.optionalWith(IntFromEnv(0, 365 * 86_400), { default: () => 86_400 }),
  RT_KEEP_FAILED_S: Schema.optionalWith(IntFromEnv(0, 365 * 86_400), { default: () => 7 * 86_400 }),
  RT_KEEP_CANCELLED_S: Schema.optionalWith(IntFromEnv(0, 365 * 86_400), { default: () => 86_400 }),
  DATABASE_URL: Schema.optional(Schema.String.pipe(Schema.pattern(/^(postgres(ql)?:\/\/|sqlite:)/))),
  RT_DATA_DIR: Schema.optionalWith(Schema.String.pipe(Schema.minLength(1)), { default: () => "data" }),
  RT_ENCRYPTION_KEY: Schema.optional(Schema.String.pipe(Schema.filter(isKeyMaterial))),
  RT_ENCRYPTION_OLD_KEYS: Schema.optional(
    Schema.String.pipe(
      Schema.filter(
        (list) =>
          list.split(",").find((k) => k.trim() !== "" && isKeyMaterial(k.trim()) !== true) === undefined ||
          KEY_EXPECTED,
      ),
    ),
  ),
  RT_PROFILE: Schema.optionalWith(Schema.Literal("development", "production", "test"), {
    default: () => "development" as const,
  }),
  WORKER_MODE: Schema.optional(Schema.Literal("integrated", "external", "hybrid")),
  RT_JOBS_MODULE: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  RT_POOL_THREADS: Schema.optional(IntFromEnv(1, 256)),
  RT_THREAD_HEAP_MB: Schema.optionalWith(IntFromEnv(32, 65_536), { default: () => 512 }),
  RT_THREAD_CODE: Schema.optionalWith(Schema.Literal("bundle", "tsx"), { default: () => "bundle" as const }),
  RT_CLAIM_IN: Schema.optionalWith(Schema.Literal("main", "threads"), { default: () => "main" as const }),
  RT_SHUTDOWN_MS: Schema.optionalWith(IntFromEnv(0, 3_600_000), { default: () => 30_000 }),
  RT_TIMEOUT_URGENT_S: Schema.optionalWith(IntFromEnv(1, 86_400), { default: () => 600 }),
  RT_TIMEOUT_HIGH_S: Schema.optionalWith(IntFromEnv(1, 86_400), { default: () => 300 }),
  RT_TIMEOUT_NORMAL_S: Schema.optionalWith(IntFromEnv(1, 86_400), { default: () => 300 }),
  RT_TIMEOUT_LOW_S: Schema.optionalWith(IntFromEnv(1, 86_400), { default: () => 900 }),
  RT_HEARTBEAT_MS: Schema.optionalWith(IntFromEnv(100, 600_000), { default: () => 5_000 }),
  PORT: Schema.optionalWith(IntFromEnv(0, 65_535), { default: () => 8000 }),
  RT_HTTP_HOST: Schema.optionalWith(Schema.String.pipe(Schema.minLength(1)), { default: () => "0.0.0.0" }),
  RT_HTTP_BODY_LIMIT_KB: Schema.optionalWith(IntFromEnv(1, 10_240), { default: () => 64 }),
  RT_HEALTH_INTERVAL_MS: Schema.optionalWith(IntFromEnv(50, 60_000), { default: () => 1_000 }),
  RT_HEALTH_TIMEOUT_MS: Schema.optionalWith(IntFromEnv(10, 60_000), { default: () => 500 }),
  RT_HEALTH_FAILURES: Schema.optionalWith(IntFromEnv(1, 100), { default: () => 3 }),
  RT_MEMORY_WARN_PCT: Schema.optionalWith(IntFromEnv(1, 100), { default: () => 80 }),
  RT_SUBMIT_TIMEOUT_MS: Schema.optionalWith(IntFromEnv(10, 60_000), { default: () => 1_000 }),
  RT_SUBMIT_LIMIT: Schema.optionalWith(IntFromEnv(0, 100_000), { default: () => 3 }),
  RT_SUBMIT_WINDOW_S: Schema.optionalWith(IntFromEnv(1, 86_400), { default: () => 300 }),
  RT_RECONCILE_MS: Schema.optionalWith(IntFromEnv(100, 3_600_000), { default: () => 15_000 }),
  RT_RECONCILE_GRACE_MS: Schema.optionalWith(IntFromEnv(0, 3_600_000), { default: () => 10_000 }),
  RT_ALERT_INTERVAL_MS: Schema.optionalWith(IntFromEnv(100, 600_000), { default: () => 5_000 }),
  RT_ALERT_REPEAT_S: Schema.optionalWith(IntFromEnv(1, 7 * 86_400), { default: () => 3_600 }),
  RT_ALERT_WINDOW_MIN: Schema.optionalWith(IntFromEnv(1, 60), { default: () => 5 }),
  RT_ALERT_BACKLOG: Schema.optionalWith(IntFromEnv(1, 100_000_000), { default: () => 1_000 }),
  RT_ALERT_WAIT_URGENT_S: Schema.optionalWith(IntFromEnv(1, 7 * 86_400), { default: () => 30 }),
  RT_ALERT_WAIT_HIGH_S: Schema.optionalWith(IntFromEnv(1, 7 * 86_400), { default: () => 120 }),
  RT_ALERT_WAIT_NORMAL_S: Schema.optionalWith(IntFromEnv(1, 7 * 86_400), { default: () => 600 }),
  RT_ALERT_WAIT_LOW_S: Schema.optionalWith(IntFromEnv(1, 7 * 86_400), { default: () => 3_600 }),
  RT_ALERT_FAILURE_PCT: Schema.optionalWith(IntFromEnv(1, 100), { default: () => 25 }),
  RT_ALERT_FAILURE_MIN: Schema.optionalWith(IntFromEnv(1, 1_000_000), { default: () => 10 }),
  RT_ALERT_DEAD_LETTERS: Schema.optionalWith(IntFromEnv(1, 1_000_000), { default: () => 1 }),
  RT_ALERT_RESTARTS: Schema.optionalWith(IntFromEnv(0, 10_000), { default: () => 3 }),
  RT_ALERT_SATURATED_S: Schema.optionalWith(IntFromEnv(0, 86_400), { default: () => 60 }),
  ALERT_WEBHOOK_URL: Schema.optional(Schema.String.pipe(Schema.pattern(/^https?:\/\/[^\s]+$/))),
  CAPTION_ENGINE: Schema.optional(Schema.Literal("ollama", "basic")),
  OLLAMA_URL: Schema.optional(Schema.String.pipe(Schema.pattern(/^https?:\/\//))),
  OLLAMA_MODEL: Schema.optionalWith(Schema.String.pipe(Schema.minLength(1)), { default: () => "llava:7b" }),
  OLLAMA_BACKUP_MODEL: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  OLLAMA_TIMEOUT: Schema.optionalWith(IntFromEnv(1, 3_600), { default: () => 120 }),
  OTEL_TRACES_EXPORTER: Schema.optional(Schema.Literal("none", "otlp", "console")),
  OTEL_SERVICE_NAME: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  RT_LOG_FORMAT: Schema.optional(Schema.Literal("json", "logfmt", "pretty")),
  RT_LOG_LEVEL: Schema.optionalWith(Schema.Literal("debug", "info", "warning", "error"), {
    default: () => "info" as const,
  }),
});
export type Config = typeof EnvSchema.Type;

/**
 * What each variable means, for `docs/configuration.md` (generated by `npm run docs:config` with
 * the defaults and bounds read from the schema above). Typed by the schema's own fields: a
 * variable added without a meaning, or a meaning left behind, does not compile.
 */
export const DESCRIPTIONS: Readonly<Record<keyof typeof EnvSchema.fields, string>> = {
  REDIS_URL:
    "Redis to use: `redis://[user:password@]host:port[/db]` (`rediss://` for TLS), `redis+sentinel://host:port,host:port/<master>` or `redis+cluster://host:port,host:port`. Unset: the embedded runtime starts a private redis-server.",
  REDIS_TLS_CA:
    "A PEM file of the CA that signed the Redis servers' certificates, for `rediss://` with a private CA.",
  REDIS_SENTINEL_PASSWORD: "The sentinels' own password, when they require one (`redis+sentinel://`).",
  RT_PREFIX: "Key prefix before the queue's {hash tag}.",
  RT_QUEUE: "Queue name; also the Redis Cluster hash tag of all its keys.",
  RT_LEASE_MS: "A job not renewed for this long is taken from its worker and run again.",
  RT_MAX_RECLAIMS: "A job reclaimed more often than this is dead-lettered as poison.",
  RT_DEAD_LETTER_MAX: "Dead letters kept per priority.",
  RT_KEEP_COMPLETED_S:
    "How long a completed job's record stays in Redis, in seconds: at least this, at most twice this (0: until purged).",
  RT_KEEP_FAILED_S: "How long a failed job's data stays in Redis, in seconds.",
  RT_KEEP_CANCELLED_S: "How long a cancelled job's data stays in Redis, in seconds.",
  DATABASE_URL: "`postgresql://...` for PostgreSQL; unset: a SQLite file in RT_DATA_DIR.",
  RT_DATA_DIR: "Where the embedded defaults keep their files (the SQLite database, the encryption key).",
  RT_ENCRYPTION_KEY:
    "32 bytes, base64: encrypts platform access tokens at rest; generated into RT_DATA_DIR when unset.",
  RT_ENCRYPTION_OLD_KEYS:
    "Retired keys (comma-separated, base64) that still open older values until `ratatoskr keys rotate` re-encrypts them.",
  RT_PROFILE: "Deployment profile: worker groups and defaults (config/profiles.ts).",
  WORKER_MODE: "Where jobs run: in the web process, in `ratatoskr supervisor` processes, or both.",
  RT_JOBS_MODULE: "Module whose default export is the job registry, loaded by every worker thread.",
  RT_POOL_THREADS: "Worker threads in this process's pool; default one per CPU.",
  RT_THREAD_HEAP_MB: "Heap cap per worker thread (old generation), in MB.",
  RT_THREAD_CODE:
    "How worker threads load the job registry: `bundle` (compiled once at start, threads ready about twice as soon) or `tsx` (each thread compiles the sources itself).",
  RT_CLAIM_IN:
    "Where a worker group's jobs are claimed: `main` (the main thread claims and sends each job to a worker thread) or `threads` (each worker thread claims its share itself; no job crosses between threads).",
  RT_SHUTDOWN_MS: "On stop, how long running jobs may finish before they are left to the reclaimer.",
  RT_TIMEOUT_URGENT_S:
    "Longest run of an urgent job, in seconds; past it the attempt is aborted and retried.",
  RT_TIMEOUT_HIGH_S: "Longest run of a high-priority job, in seconds.",
  RT_TIMEOUT_NORMAL_S: "Longest run of a normal-priority job, in seconds.",
  RT_TIMEOUT_LOW_S: "Longest run of a low-priority job, in seconds.",
  RT_HEARTBEAT_MS: "How often each process renews its registration; it lapses after three missed beats.",
  PORT: "`ratatoskr serve`: HTTP and WebSocket on one port.",
  RT_HTTP_HOST: "`ratatoskr serve`: the address to listen on.",
  RT_HTTP_BODY_LIMIT_KB: "Largest request body accepted, in KiB; more is refused with 413.",
  RT_HEALTH_INTERVAL_MS: "How often the health actor pings Redis.",
  RT_HEALTH_TIMEOUT_MS: "A ping not answered within this counts as a miss.",
  RT_HEALTH_FAILURES:
    "Misses in a row that mean Redis is down (tasks then go to the database queue); one answer means it is back.",
  RT_MEMORY_WARN_PCT:
    "Redis memory use (of maxmemory) that raises an alert and triggers a cleanup, in percent.",
  RT_SUBMIT_LIMIT:
    "`ratatoskr serve`: caption tasks a user may submit per RT_SUBMIT_WINDOW_S (admins exempt); past it, 429 with Retry-After. 0: no limit.",
  RT_SUBMIT_WINDOW_S: "The window of RT_SUBMIT_LIMIT, in seconds.",
  RT_SUBMIT_TIMEOUT_MS:
    "How long a submission waits for Redis before it is kept in the database queue instead.",
  RT_RECONCILE_MS:
    "How often the reconciler compares the ledger with Redis (and at once when Redis returns).",
  RT_RECONCILE_GRACE_MS:
    "An active task younger than this is left alone by the reconciler: it may be mid-submit.",
  RT_ALERT_INTERVAL_MS: "How often the alert rules are evaluated.",
  RT_ALERT_REPEAT_S: "A firing alert is announced again this often while it holds, in seconds.",
  RT_ALERT_WINDOW_MIN: "The window of the failure-rate, dead-letter and restart rules, in minutes.",
  RT_ALERT_BACKLOG: "Jobs waiting in one priority that raise the backlog alert.",
  RT_ALERT_WAIT_URGENT_S: "Age of the oldest waiting urgent job that raises an alert (critical), in seconds.",
  RT_ALERT_WAIT_HIGH_S: "Age of the oldest waiting high-priority job that raises an alert, in seconds.",
  RT_ALERT_WAIT_NORMAL_S: "Age of the oldest waiting normal-priority job that raises an alert, in seconds.",
  RT_ALERT_WAIT_LOW_S: "Age of the oldest waiting low-priority job that raises an alert (info), in seconds.",
  RT_ALERT_FAILURE_PCT: "Share of attempts failing over the window that raises an alert, in percent.",
  RT_ALERT_FAILURE_MIN: "Attempts the window must hold before its failure rate counts.",
  RT_ALERT_DEAD_LETTERS: "Dead letters added over the window that raise an alert.",
  RT_ALERT_RESTARTS: "Actor restarts in one process over the window above which an alert is raised.",
  RT_ALERT_SATURATED_S:
    "How long every worker slot must be busy while jobs wait before the saturation alert, in seconds.",
  ALERT_WEBHOOK_URL:
    "Where alert notices are POSTed as JSON (fired, repeated, resolved); retried with backoff until taken.",
  CAPTION_ENGINE:
    "Which caption engine runs: `ollama` (default when OLLAMA_URL is set) or the offline `basic`.",
  OLLAMA_URL: "The Ollama server for the `ollama` caption engine.",
  OLLAMA_MODEL: "The vision model Ollama runs.",
  OLLAMA_BACKUP_MODEL: "A model that is tried when the main one fails or answers nothing.",
  OLLAMA_TIMEOUT: "Seconds one model call may take.",
  OTEL_TRACES_EXPORTER:
    "Traces of each task (enqueue, claim, run, complete): `otlp` (OTLP/HTTP, set by the standard OTEL_EXPORTER_OTLP_* variables) or `console`. Unset: off.",
  OTEL_SERVICE_NAME: "The service name on traces; default `ratatoskr`.",
  RT_LOG_FORMAT: "Log lines as JSON, logfmt or pretty; default by profile (JSON in production).",
  RT_LOG_LEVEL: "The lowest level logged.",
};

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** How a refused value that may hold a secret is shown: never the secret itself. */
const SECRET_SHOWN_AS: Record<string, (value: string) => string> = {
  REDIS_URL: redactText,
  DATABASE_URL: redactText,
  RT_ENCRYPTION_KEY: () => "(hidden)",
  RT_ENCRYPTION_OLD_KEYS: () => "(hidden)",
  REDIS_SENTINEL_PASSWORD: () => "(hidden)",
};

const decode = Schema.decodeUnknownEither(EnvSchema, { errors: "all", onExcessProperty: "ignore" });

const EXPECTED_LITERAL = /^Expected ("(?:[^"\\]|\\.)*"), actual /;

/**
 * What is wrong with one variable. A choice of words (a union of literals) fails once per word:
 * taken alone, the first failure named only the first word ("Expected "main"").
 */
const problemWith = (messages: readonly string[], value: string | undefined): string | undefined => {
  const words = messages.map((message) => EXPECTED_LITERAL.exec(message)?.[1]);
  if (messages.length > 1 && words.every((word) => word !== undefined))
    return `Expected one of ${words.join(", ")}, actual ${JSON.stringify(value ?? "")}`;
  return messages[0];
};

/** Reads the configuration from the environment, or throws one clear line about what is wrong. */
export const loadConfig = (env: Record<string, string | undefined> = process.env): Config => {
  const known = Object.keys(EnvSchema.fields);
  // Empty variables count as unset, as a shell's `VAR=` usually means "no value".
  const relevant = Object.fromEntries(
    known.filter((k) => env[k] !== undefined && env[k] !== "").map((k) => [k, env[k]]),
  );
  return Either.getOrThrowWith(decode(relevant), (error) => {
    // An optional field is a union with undefined; the useful issues are the other member's.
    const all = ParseResult.ArrayFormatter.formatErrorSync(error);
    const useful = all.filter((i) => !i.message.startsWith("Expected undefined"));
    const issues = useful.length > 0 ? useful : all;
    const variable = String(issues[0]?.path[0] ?? "configuration");
    const value =
      variable in SECRET_SHOWN_AS ? SECRET_SHOWN_AS[variable]!(env[variable] ?? "") : env[variable];
    const messages = issues.filter((i) => String(i.path[0]) === variable).map((i) => i.message);
    return new ConfigError(
      `${variable}=${JSON.stringify(value ?? "")} is not valid: ${problemWith(messages, value) ?? error.message}`,
    );
  });
};

/** What every Redis connection needs besides the URL. */
export const redisAccessFrom = (config: Config) => ({
  ...(config.REDIS_TLS_CA === undefined ? {} : { tlsCaFile: config.REDIS_TLS_CA }),
  ...(config.REDIS_SENTINEL_PASSWORD === undefined
    ? {}
    : { sentinelPassword: config.REDIS_SENTINEL_PASSWORD }),
});

export const queueOptionsFrom = (config: Config) => ({
  prefix: config.RT_PREFIX,
  name: config.RT_QUEUE,
  deadLetterMax: config.RT_DEAD_LETTER_MAX,
  retention: {
    completedSeconds: config.RT_KEEP_COMPLETED_S,
    failedSeconds: config.RT_KEEP_FAILED_S,
    cancelledSeconds: config.RT_KEEP_CANCELLED_S,
  },
});
