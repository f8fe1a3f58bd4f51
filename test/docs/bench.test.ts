import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DOCS = [
  "README.md",
  "bench/README.md",
  "bench/PERFORMANCE.md",
  ...readdirSync(join(ROOT, "docs")).map((f) => `docs/${f}`),
];

/**
 * Every `npm run bench…` line of a shell block in the docs, as written. Benchmarks are not
 * tests: each runs here shrunk (`SHRINK`) so that CI proves the command works, never how fast.
 */
const documentedBenchCommands = (): string[] => {
  const found = new Set<string>();
  for (const file of DOCS.filter((f) => f.endsWith(".md"))) {
    const text = readFileSync(join(ROOT, file), "utf8");
    for (const block of text.matchAll(/```(?:sh|bash)\n([\s\S]*?)```/g)) {
      for (const line of block[1]!.split("\n")) {
        const command = line.replace(/#.*$/, "").trim();
        if (/(^|\s)npm run bench(:[a-z-]+)?\b/.test(command)) found.add(command);
      }
    }
  }
  return [...found];
};

/** Later options win: the documented ones stay in the line, these only make the run small. */
const SHRINK: Record<string, string> = {
  bench: "--jobs 60 --rounds 1 --seconds 1 --warmup 1",
  "bench:http": "--seconds 1 --rate 20",
  "bench:record-cost": "--jobs 300 --rounds 1 --concurrency 16",
  "bench:latency-floor": "--seconds 1 --warmup 1 --rounds 1",
  "bench:redis-work": "--jobs 200 --concurrency 16",
  "bench:thread-consumers": "--jobs 200 --rounds 1",
};

const runShell = (command: string, timeoutMs: number) =>
  new Promise<{ status: number | null; output: string }>((resolve) => {
    const child = spawn("bash", ["-c", command], { cwd: ROOT, env: { ...process.env, CI: "true" } });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGINT"), timeoutMs);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, output });
    });
  });

describe("the documented benchmark commands", () => {
  const commands = documentedBenchCommands();

  it("are found in the docs: the quick run, the full run, a case list, the HTTP benchmark, the two floors, the count and the thread consumers", () => {
    expect(commands).toEqual(
      expect.arrayContaining([
        "npm run bench -- --quick",
        "npm run bench",
        "npm run bench:http",
        "npm run bench:record-cost",
        "npm run bench:latency-floor",
        "npm run bench:redis-work",
        "npm run bench:thread-consumers",
      ]),
    );
  });

  for (const command of commands) {
    const script = /npm run (bench(?::[a-z-]+)?)/.exec(command)![1]!;
    const shrunk = command.includes(" -- ")
      ? `${command} ${SHRINK[script]}`
      : command.replace(`npm run ${script}`, `npm run ${script} -- ${SHRINK[script]}`);
    it(`runs: ${command}`, { timeout: 240_000 }, async () => {
      const { status, output } = await runShell(shrunk, 230_000);
      expect(status, output).toBe(0);
      if (script === "bench:latency-floor")
        expect(output).toMatch(
          /\| ours \|.*\| streams only \|.*\| two round trips, nothing else \|.*\| BullMQ \|/s,
        );
      // Every side drained its jobs (each is verified) and has its row, BullMQ's at 1.00.
      if (script === "bench:thread-consumers")
        expect(output).toMatch(
          /\| ours, the main thread claims \|.*\| ours, RT_CLAIM_IN=threads \(2 threads\) \|.*\| ours, RT_CLAIM_IN=threads \(1 thread\) \|.*\| claims in 1 thread \|.*\| claims in 2 threads \|.*\| BullMQ sandbox \| [\d,.]+ \| 1\.00 \|/s,
        );
      if (script === "bench:record-cost")
        expect(output).toMatch(/\| step 0: streams only .*\| step 5: .*\| step 6: .*\| BullMQ \|/s);
      // Counted under valgrind (a job's life, then its drain and its enqueue apart), or said
      // plainly that it could not be.
      if (script === "bench:redis-work")
        expect(output).toMatch(
          /\| ours( \| [\d,]+ \| [\d.]+){3} \|.*\| BullMQ( \| [\d,]+ \| 1\.00){3} \||valgrind is not installed/s,
        );
      if (script === "bench" && !command.includes("--list")) {
        // The table, with every job checked, and the JSON and chart it names.
        expect(output).toContain("Every job verified.");
        const json = /^Results: (\S+)$/m.exec(output)?.[1];
        const chart = /^Chart: +(\S+)$/m.exec(output)?.[1];
        expect(json && existsSync(json), output).toBe(true);
        expect(chart && existsSync(chart), output).toBe(true);
        const report = JSON.parse(readFileSync(json!, "utf8")) as {
          runs: unknown[];
          machine: { memorySampling: string };
        };
        expect(report.runs.length).toBeGreaterThan(0);
        // Every case's run has the floor beside ours' latency-500: both figures in its row.
        if (!command.includes("--cases"))
          expect(output).toMatch(
            /\| latency-floor-500 +\| enqueue→completion p99 vs the bare round trips' +\| [\d.]+ \([\d.]+–[\d.]+\) +\| [\d.]+ /,
          );
        // The machine's DAMON as the kernel shows it (on the machines this runs on: sampling).
        const damon = "/sys/kernel/mm/damon/admin/kdamonds";
        const sampling = (existsSync(damon) ? readdirSync(damon) : [])
          .filter((name) => /^\d+$/.test(name))
          .some((name) => readFileSync(join(damon, name, "state"), "utf8").trim() === "on");
        expect(report.machine.memorySampling).toMatch(
          sampling ? /^DAMON on: kdamond \d+ \(\w+, a sample every [\d.]+ ms\)/ : /^DAMON off$/,
        );
      }
    });
  }
});
