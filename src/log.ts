import { Layer, Logger, LogLevel } from "effect";

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
