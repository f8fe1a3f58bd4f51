import { Effect, Layer, Logger, LogLevel, ManagedRuntime } from "effect";

export type LogFormat = "json" | "logfmt" | "pretty";
export type LevelName = "debug" | "info" | "warning" | "error";

const levels: Record<LevelName, LogLevel.LogLevel> = {
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
};

/**
 * The one logger: Effect's, as JSON lines in production and logfmt in development. Actors
 * annotate their lines (`actor=...`), so every line says who wrote it.
 */
export const loggerLayer = (format: LogFormat, level: LevelName) =>
  Layer.merge(
    Logger.replace(
      Logger.defaultLogger,
      format === "pretty"
        ? Logger.mapInput(Logger.prettyLogger(), redact)
        : // A formatter only makes the line; withConsoleLog also prints it.
          Logger.withConsoleLog(
            Logger.mapInput(format === "json" ? Logger.jsonLogger : Logger.logfmtLogger, redact),
          ),
    ),
    Logger.minimumLogLevel(levels[level]),
  );

/**
 * Secrets that must never reach a log line, whatever message carries them (an error from a
 * driver, a URL someone logged): bearer tokens, Ratatoskr API tokens, passwords in URLs, and
 * token or key parameters in query strings.
 */
const SECRETS: ReadonlyArray<[RegExp, string]> = [
  [/\bBearer\s+[^\s"',;]+/gi, "Bearer [redacted]"],
  [/\brt_[A-Za-z0-9_-]{20,}/g, "rt_[redacted]"],
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#\s@]*:)[^@/?#\s]+@/gi, "$1[redacted]@"],
  [/([?&](?:access_token|token|key|password|secret)=)[^&#\s"']+/gi, "$1[redacted]"],
];

export const redactText = (text: string): string =>
  SECRETS.reduce((t, [pattern, replacement]) => t.replace(pattern, replacement), text);

/** A log message is a value or an array of them; strings are redacted, the rest kept as is. */
const redact = (message: unknown): unknown =>
  typeof message === "string"
    ? redactText(message)
    : Array.isArray(message)
      ? message.map(redact)
      : message instanceof Error
        ? redactText(String(message))
        : message;

export interface PlainLogger {
  info(message: string, annotations?: Record<string, unknown>): void;
  warn(message: string, annotations?: Record<string, unknown>): void;
  error(message: string, annotations?: Record<string, unknown>): void;
}

/**
 * The same logger for code that is not an Effect (the HTTP server's callbacks): one runtime
 * built once, each line an Effect log run on it, so format, level and annotations are shared.
 */
export const plainLogger = (
  format: LogFormat,
  level: LevelName,
  annotations: Record<string, unknown> = {},
): PlainLogger => {
  const runtime = ManagedRuntime.make(loggerLayer(format, level));
  const write =
    (log: (message: string) => Effect.Effect<void>) =>
    (message: string, extra = {}) =>
      runtime.runSync(log(message).pipe(Effect.annotateLogs({ ...annotations, ...extra })));
  return { info: write(Effect.logInfo), warn: write(Effect.logWarning), error: write(Effect.logError) };
};

const AT_LEVEL = {
  debug: Effect.logDebug,
  info: Effect.logInfo,
  warning: Effect.logWarning,
  error: Effect.logError,
} as const;

/**
 * A log line at a level named by a job (`warning`, not Effect's `Warning`). The level comes from
 * job code, typed or not: one it does not name is logged at `info` rather than lost or thrown.
 */
export const logAtLevel = (
  level: "debug" | "info" | "warning" | "error",
  message: string,
): Effect.Effect<void> => (Object.hasOwn(AT_LEVEL, level) ? AT_LEVEL[level] : Effect.logInfo)(message);
