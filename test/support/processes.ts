import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { TEST_JOBS } from "./runtime.js";

export const CLI = fileURLToPath(new URL("../../bin/ratatoskr.js", import.meta.url));

export interface Proc {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/**
 * Real `ratatoskr supervisor` and `ratatoskr serve` processes, as an operator would start them;
 * `killAll` (for an afterEach) takes down whatever a test left running.
 */
export const supervisors = () => {
  const children: Proc[] = [];
  const spawnSupervisor = (env: Record<string, string>, args: string[] = []): Proc =>
    spawnCli(["supervisor", ...args], env);
  /** `ratatoskr serve` on a free port; resolves with its address once it listens. */
  const spawnServe = async (env: Record<string, string>): Promise<Proc & { base: string }> => {
    const proc = spawnCli(["serve"], { RT_HTTP_HOST: "127.0.0.1", PORT: "0", ...env });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const found = /http:\/\/127\.0\.0\.1:\d+/.exec(proc.output());
      if (found) return { ...proc, base: found[0] };
      if (Date.now() > deadline || proc.child.exitCode !== null)
        throw new Error(`ratatoskr serve did not listen:\n${proc.output()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const spawnCli = (args: string[], env: Record<string, string>): Proc => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, RT_PROFILE: "test", RT_JOBS_MODULE: TEST_JOBS, RT_POOL_THREADS: "2", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const proc = { child, output: () => output, exited };
    children.push(proc);
    return proc;
  };
  const killAll = async () => {
    for (const p of children.splice(0)) {
      p.child.kill("SIGKILL");
      await p.exited;
    }
  };
  return { spawnSupervisor, spawnServe, killAll };
};
