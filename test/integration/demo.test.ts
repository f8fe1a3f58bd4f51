import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { CLI } from "../support/processes.js";

/** The README's run command, as a newcomer runs it: no REDIS_URL, no DATABASE_URL. */
const runDemo = () =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, PORT: "0" };
    for (const name of ["REDIS_URL", "DATABASE_URL", "RT_DATA_DIR", "CAPTION_ENGINE", "OLLAMA_URL"])
      delete env[name];
    const child = spawn(process.execPath, [CLI, "demo", "--no-wait"], { env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });

describe("ratatoskr demo", () => {
  it("runs every user's task on the embedded defaults, urgent work first, and prints the captions", async () => {
    const { code, stdout, stderr } = await runDemo();
    expect(code, `stdout:\n${stdout}\nstderr:\n${stderr}`).toBe(0);
    expect(stdout).toContain("a private redis-server");
    expect(stdout).toMatch(
      /A second task for ann is refused while the first is active: user \d+ already has/,
    );
    expect(stdout).toContain("6 of 6 tasks completed");
    // One caption per photo: 13 posts of one or two photos each, 18 in all, from the offline engine.
    const captions = stdout
      .split("\n")
      .filter((l) => /^ {4}[a-z]+\.jpg: .+ pixels\. \(AI-generated\)/.test(l));
    expect(captions).toHaveLength(18);
    // Four worker slots and six tasks: the two low ones wait until an urgent, a high and two normal ones run.
    const lines = stdout.split("\n");
    const firstRunning = (who: string) => lines.findIndex((l) => new RegExp(`^${who} .* running `).test(l));
    for (const low of ["ann", "fay"]) expect(firstRunning(low)).toBeGreaterThan(firstRunning("cy"));
    expect(stdout).toMatch(
      /The dashboard: http:\/\/127\.0\.0\.1:\d+\/admin \(sign in with this admin token: rt_/,
    );
  }, 120_000);
});
