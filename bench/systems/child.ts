import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

/** Where `--import tsx` resolves from: the root package, which has tsx. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Resolves when `child` prints `line` on stdout; rejects if it exits first or takes over 30 s. */
export const lineFrom = (child: ChildProcess, line: string, what: string): Promise<void> =>
  new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => fail(new Error(`${what}: no "${line}" within 30 s`)), 30_000);
    const onExit = (code: number | null) => fail(new Error(`${what} exited (${code}) before "${line}"`));
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.split("\n").includes(line)) settle(resolve);
    };
    const settle = (then: () => void) => {
      clearTimeout(timer);
      child.off("exit", onExit);
      child.stdout?.off("data", onData);
      then();
    };
    const fail = (error: Error) => settle(() => reject(error));
    child.once("exit", onExit);
    child.stdout?.on("data", onData);
  });
