import { Effect } from "effect";
import { afterEach, describe, expect, it, vi } from "vitest";
import { loggerLayer } from "../../src/log.js";

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

  it("prints one JSON object per line in production format", async () => {
    const [line] = await linesOf("json", "warning");
    expect(JSON.parse(line!)).toMatchObject({
      logLevel: "WARN",
      message: "a warning",
      annotations: { actor: "reconciler" },
    });
  });
});
