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
    // The layers, not the bare formatters: a formatter only makes the line, these also print it.
    format === "json" ? Logger.json : format === "pretty" ? Logger.pretty : Logger.logFmt,
    Logger.minimumLogLevel(levels[level]),
  );

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
