import { Either, ParseResult, Schema } from "effect";

const IntFromEnv = (min: number, max: number) =>
  Schema.NumberFromString.pipe(Schema.int(), Schema.between(min, max));

/**
 * The one configuration schema: every environment variable the runtime reads, its default and
 * its bounds. A bad value stops start-up with one line naming the variable.
 */
export const EnvSchema = Schema.Struct({
  /** Redis to use; when unset, the embedded runtime starts a private redis-server. */
  REDIS_URL: Schema.optional(Schema.String.pipe(Schema.pattern(/^rediss?:\/\//))),
  /** Key prefix before the queue's {hash tag}. */
  RT_PREFIX: Schema.optionalWith(Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_.:-]{1,32}$/)), {
    default: () => "rt",
  }),
  /** Queue name; also the Redis Cluster hash tag of all its keys. */
  RT_QUEUE: Schema.optionalWith(Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_.-]{1,64}$/)), {
    default: () => "caption",
  }),
  /** A job not renewed for this long is taken from its worker and run again. */
  RT_LEASE_MS: Schema.optionalWith(IntFromEnv(1_000, 3_600_000), { default: () => 30_000 }),
  /** A job reclaimed more often than this is dead-lettered as poison. */
  RT_MAX_RECLAIMS: Schema.optionalWith(IntFromEnv(0, 100), { default: () => 3 }),
  /** Dead letters kept per priority. */
  RT_DEAD_LETTER_MAX: Schema.optionalWith(IntFromEnv(10, 10_000_000), { default: () => 10_000 }),
  RT_KEEP_COMPLETED_S: Schema.optionalWith(IntFromEnv(0, 365 * 86_400), { default: () => 86_400 }),
  RT_KEEP_FAILED_S: Schema.optionalWith(IntFromEnv(0, 365 * 86_400), { default: () => 7 * 86_400 }),
  RT_KEEP_CANCELLED_S: Schema.optionalWith(IntFromEnv(0, 365 * 86_400), { default: () => 86_400 }),
  /** `postgresql://...` for PostgreSQL; unset: a SQLite file in RT_DATA_DIR. */
  DATABASE_URL: Schema.optional(Schema.String.pipe(Schema.pattern(/^(postgres(ql)?:\/\/|sqlite:)/))),
  /** Where the embedded defaults keep their files (the SQLite database, the encryption key). */
  RT_DATA_DIR: Schema.optionalWith(Schema.String.pipe(Schema.minLength(1)), { default: () => "data" }),
  /** 32 bytes, base64: encrypts platform access tokens at rest; generated into RT_DATA_DIR when unset. */
  RT_ENCRYPTION_KEY: Schema.optional(Schema.String.pipe(Schema.minLength(40))),
  /** Deployment profile: worker groups and defaults (config/profiles.ts). */
  RT_PROFILE: Schema.optionalWith(Schema.Literal("development", "production", "test"), {
    default: () => "development" as const,
  }),
  /** Where jobs run: in the web process, in `ratatoskr supervisor` processes, or both. */
  WORKER_MODE: Schema.optional(Schema.Literal("integrated", "external", "hybrid")),
  /** Module whose default export is the job registry, loaded by every worker thread. */
  RT_JOBS_MODULE: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  /** Worker threads in this process's pool; default one per CPU. */
  RT_POOL_THREADS: Schema.optional(IntFromEnv(1, 256)),
  /** Heap cap per worker thread (old generation), in MB. */
  RT_THREAD_HEAP_MB: Schema.optionalWith(IntFromEnv(32, 65_536), { default: () => 512 }),
  /** On stop, how long running jobs may finish before they are left to the reclaimer. */
  RT_SHUTDOWN_MS: Schema.optionalWith(IntFromEnv(0, 3_600_000), { default: () => 30_000 }),
  /** Job timeouts per priority, in seconds; a job past it is aborted and retried. */
  RT_TIMEOUT_URGENT_S: Schema.optionalWith(IntFromEnv(1, 86_400), { default: () => 600 }),
  RT_TIMEOUT_HIGH_S: Schema.optionalWith(IntFromEnv(1, 86_400), { default: () => 300 }),
  RT_TIMEOUT_NORMAL_S: Schema.optionalWith(IntFromEnv(1, 86_400), { default: () => 300 }),
  RT_TIMEOUT_LOW_S: Schema.optionalWith(IntFromEnv(1, 86_400), { default: () => 900 }),
  /** How often each process renews its registration; it lapses after three missed beats. */
  RT_HEARTBEAT_MS: Schema.optionalWith(IntFromEnv(100, 600_000), { default: () => 5_000 }),
  /** `ratatoskr serve`: HTTP and WebSocket on one port. */
  PORT: Schema.optionalWith(IntFromEnv(0, 65_535), { default: () => 8000 }),
  RT_HTTP_HOST: Schema.optionalWith(Schema.String.pipe(Schema.minLength(1)), { default: () => "0.0.0.0" }),
  /** Largest request body accepted, in KiB; more is refused with 413. */
  RT_HTTP_BODY_LIMIT_KB: Schema.optionalWith(IntFromEnv(1, 10_240), { default: () => 64 }),
  /** How often the health actor pings Redis; this many misses in a row mean Redis is down. */
  RT_HEALTH_INTERVAL_MS: Schema.optionalWith(IntFromEnv(50, 60_000), { default: () => 1_000 }),
  RT_HEALTH_TIMEOUT_MS: Schema.optionalWith(IntFromEnv(10, 60_000), { default: () => 500 }),
  RT_HEALTH_FAILURES: Schema.optionalWith(IntFromEnv(1, 100), { default: () => 3 }),
  /** Redis memory use (of maxmemory) that raises an alert and triggers a cleanup, in percent. */
  RT_MEMORY_WARN_PCT: Schema.optionalWith(IntFromEnv(1, 100), { default: () => 80 }),
  /** How long a submission waits for Redis before it is kept in the database queue instead. */
  RT_SUBMIT_TIMEOUT_MS: Schema.optionalWith(IntFromEnv(10, 60_000), { default: () => 1_000 }),
  /** How often the reconciler compares the ledger with Redis (and at once when Redis returns). */
  RT_RECONCILE_MS: Schema.optionalWith(IntFromEnv(100, 3_600_000), { default: () => 15_000 }),
  /** An active task younger than this is left alone by the reconciler: it may be mid-submit. */
  RT_RECONCILE_GRACE_MS: Schema.optionalWith(IntFromEnv(0, 3_600_000), { default: () => 10_000 }),
  /** Which caption engine runs: `ollama` (default when OLLAMA_URL is set) or the offline `basic`. */
  CAPTION_ENGINE: Schema.optional(Schema.Literal("ollama", "basic")),
  OLLAMA_URL: Schema.optional(Schema.String.pipe(Schema.pattern(/^https?:\/\//))),
  OLLAMA_MODEL: Schema.optionalWith(Schema.String.pipe(Schema.minLength(1)), { default: () => "llava:7b" }),
  /** A model that is tried when the main one fails or answers nothing. */
  OLLAMA_BACKUP_MODEL: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  /** Seconds one model call may take. */
  OLLAMA_TIMEOUT: Schema.optionalWith(IntFromEnv(1, 3_600), { default: () => 120 }),
  /** Log lines as JSON (production) or logfmt (development); default by profile. */
  RT_LOG_FORMAT: Schema.optional(Schema.Literal("json", "logfmt", "pretty")),
  RT_LOG_LEVEL: Schema.optionalWith(Schema.Literal("debug", "info", "warning", "error"), {
    default: () => "info" as const,
  }),
});
export type Config = typeof EnvSchema.Type;

export class ConfigError extends Error {
  override name = "ConfigError";
}

const decode = Schema.decodeUnknownEither(EnvSchema, { errors: "first", onExcessProperty: "ignore" });

/** Reads the configuration from the environment, or throws one clear line about what is wrong. */
export const loadConfig = (env: Record<string, string | undefined> = process.env): Config => {
  const known = Object.keys(EnvSchema.fields);
  // Empty variables count as unset, as a shell's `VAR=` usually means "no value".
  const relevant = Object.fromEntries(
    known.filter((k) => env[k] !== undefined && env[k] !== "").map((k) => [k, env[k]]),
  );
  return Either.getOrThrowWith(decode(relevant), (error) => {
    // An optional field is a union with undefined; the useful issue is the other member's.
    const issues = ParseResult.ArrayFormatter.formatErrorSync(error);
    const issue = issues.find((i) => !i.message.startsWith("Expected undefined")) ?? issues[0];
    const variable = String(issue?.path[0] ?? "configuration");
    return new ConfigError(
      `${variable}=${JSON.stringify(env[variable] ?? "")} is not valid: ${issue?.message ?? error.message}`,
    );
  });
};

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
