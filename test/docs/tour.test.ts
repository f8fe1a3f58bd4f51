import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { CLI } from "../support/processes.js";
import { eventually } from "../support/queue.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The shell block after the README's `<!-- tour: ... -->` marker, as a reader would paste it. */
const tourBlock = (): string => {
  const readme = readFileSync(`${ROOT}README.md`, "utf8");
  const marker = readme.indexOf("<!-- tour:");
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(marker));
  if (marker < 0 || !block) throw new Error("the README has no tour block after its <!-- tour: --> marker");
  return block[1]!;
};

/**
 * The README's five-minute tour, run as written: the demo (`npm run demo` is this CLI's `demo`)
 * is started and left serving, its printed `export` line is taken as a reader would paste it,
 * and the tour's block runs in bash against it: curl submits, `ratatoskr watch` follows the
 * task over the progress socket until it completes, curl reads its status.
 */
describe("the README's tour", () => {
  const demo = spawn(process.execPath, [CLI, "demo"], {
    cwd: ROOT,
    env: { ...process.env, REDIS_URL: "", DATABASE_URL: "", RT_LOG_LEVEL: "error" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  demo.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  demo.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => demo.once("exit", resolve));
  afterAll(async () => {
    if (demo.exitCode === null) demo.kill("SIGINT");
    await exited;
  });

  it("submits with curl, watches the task to its end over the socket, and reads its status", async () => {
    await eventually(() => output.includes("Serving until Ctrl-C."), 150_000, "the demo to serve");
    const exported = /export RT_URL=(\S+) RT_TOKEN=(\S+)/.exec(output);
    expect(exported, output).not.toBeNull();
    const tour = spawnSync("bash", ["-e", "-o", "pipefail", "-c", tourBlock()], {
      cwd: ROOT,
      env: { ...process.env, RT_URL: exported![1], RT_TOKEN: exported![2] },
      encoding: "utf8",
      timeout: 120_000,
    });
    expect(tour.status, `${tour.stdout}\n${tour.stderr}`).toBe(0);
    expect(tour.stdout).toMatch(/^completed: \{"task_id":/m);
    // (Progress lines come only if the task still runs when watch joins: a matter of timing.)
    expect(tour.stdout).toContain('"status":"completed"');

    // And watch says so when it cannot follow: a bad token, or no task id.
    const watch = (...args: string[]) =>
      spawnSync(process.execPath, [CLI, "watch", ...args], { cwd: ROOT, encoding: "utf8", env: process.env });
    const refused = watch(
      "3f0c6f1e-8c1c-4e4c-9a51-2a8f0f6f2f10",
      "--url",
      exported![1]!,
      "--token",
      "rt_nope",
    );
    expect(refused.status).toBe(2);
    expect(refused.stdout).toContain("refused: invalid token");
    expect(watch("--url", exported![1]!).stderr).toContain("expected a task id");
  }, 300_000);

  it("stops cleanly on Ctrl-C", async () => {
    demo.kill("SIGINT");
    expect(await exited).toBe(0);
  }, 60_000);
});
