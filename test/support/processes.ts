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
 * Real `ratatoskr supervisor` processes, as an operator would start them; `killAll` (for an
 * afterEach) takes down whatever a test left running.
 */
export const supervisors = () => {
  const children: Proc[] = [];
  const spawnSupervisor = (env: Record<string, string>, args: string[] = []): Proc => {
    const child = spawn(process.execPath, [CLI, "supervisor", ...args], {
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
  return { spawnSupervisor, killAll };
};
