import { Effect, Logger, LogLevel } from "effect";
import { afterEach, describe, expect, it, vi } from "vitest";
import { logAtLevel, loggerLayer, redactText } from "../../src/log.js";

describe("the logger", () => {
  afterEach(() => vi.restoreAllMocks());

  const linesOf = async (format: "json" | "logfmt", level: "info" | "warning") => {
    const printed: string[] = [];
    vi.spyOn(console, "log").mockImplementation((line: unknown) => void printed.push(String(line)));
    await Effect.runPromise(
      Effect.logInfo("an info line").pipe(
        Effect.zipRight(Effect.logWarning("a warning")),
        Effect.annotateLogs("actor", "reconciler"),
        Effect.provide(loggerLayer(format, level)),
      ),
    );
    return printed;
  };

  it("prints logfmt lines with the actor annotation, at and above the level", async () => {
    const lines = await linesOf("logfmt", "info");
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/level=WARN .*message="a warning".*actor=reconciler/);
    expect(await linesOf("logfmt", "warning")).toHaveLength(1);
  });

  it("never prints a secret, in any format: tokens, passwords in URLs, token parameters", async () => {
    const secret =
      "connect redis://app:hunter2@redis.internal:6379 failed; GET /api/v1/x?access_token=abc123&x=1 " +
      "with Authorization: Bearer tok-SECRET-9 for rt_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abc";
    for (const format of ["logfmt", "json", "pretty"] as const) {
      const printed: string[] = [];
      vi.spyOn(console, "log").mockImplementation(
        (...parts: unknown[]) => void printed.push(parts.join(" ")),
      );
      await Effect.runPromise(
        Effect.logWarning(secret, new Error("Bearer tok-SECRET-9")).pipe(
          Effect.provide(loggerLayer(format, "info")),
        ),
      );
      const out = printed.join("\n");
      expect(out, format).toContain("redis.internal");
      for (const leak of ["hunter2", "abc123", "tok-SECRET-9", "AbCdEfGhIjKlMnOp"])
        expect(out, format).not.toContain(leak);
      vi.restoreAllMocks();
    }
    expect(redactText("postgresql://u:p%40ss@db/x?sslmode=require")).toBe(
      "postgresql://u:[redacted]@db/x?sslmode=require",
    );
  });

  it("prints one JSON object per line in production format", async () => {
    const [line] = await linesOf("json", "warning");
    expect(JSON.parse(line!)).toMatchObject({
      logLevel: "WARN",
      message: "a warning",
      annotations: { actor: "reconciler" },
    });
  });
});

describe("logAtLevel", () => {
  it("logs at the level a job names, and at info for one it does not", async () => {
    const seen: string[] = [];
    const logger = Logger.make(({ logLevel, message }) => seen.push(`${logLevel.label} ${String(message)}`));
    const write = (level: string, message: string) =>
      Effect.runPromise(
        logAtLevel(level as "info", message).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
          Logger.withMinimumLogLevel(LogLevel.Debug),
        ),
      );
    await write("warning", "careful");
    await write("debug", "detail");
    await write("loud", "from a job that made its level up");
    await write("constructor", "nor this");
    expect(seen).toEqual([
      "WARN careful",
      "DEBUG detail",
      "INFO from a job that made its level up",
      "INFO nor this",
    ]);
  });
});
