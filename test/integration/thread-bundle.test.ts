import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { bundleExecArgv, JobPool } from "../../src/pool/pool.js";
import { JobFailure } from "../../src/queue/failures.js";
import { bundleThreadCode } from "../../src/pool/thread-bundle.js";
import { CLI } from "../support/processes.js";

const registry = new URL("../support/jobs.ts", import.meta.url).href;
const scratch = () => mkdtempSync(join(tmpdir(), "rt-bundle-"));

describe("thread bundle", () => {
  it("is kept under the node_modules nearest the registry, named by its content", async () => {
    const url = await bundleThreadCode(registry);
    const path = fileURLToPath(url);
    const root = fileURLToPath(new URL("../../", import.meta.url));
    expect(dirname(path)).toBe(join(root, "node_modules", ".cache", "ratatoskr"));
    expect(basename(path)).toMatch(/^thread-[A-Z0-9]+\.mjs$/);
    // The same sources give the same file: processes share it, nothing is rewritten.
    expect(await bundleThreadCode(registry)).toBe(url);
    const code = readFileSync(path, "utf8");
    // Packages stay imports, resolved from where the registry's own imports resolve.
    expect(code).toMatch(/from "effect"/);
    expect(code).toContain(`//# sourceMappingURL=${basename(path)}.map`);
    expect(existsSync(`${path}.map`)).toBe(true);
  });

  it("refuses a registry that is not a file, is missing, or has no node_modules above it", async () => {
    await expect(bundleThreadCode("data:text/javascript,export default {}")).rejects.toThrow(/is not a file/);
    const missing = join(scratch(), "jobs.ts");
    await expect(bundleThreadCode(pathToFileURL(missing).href)).rejects.toThrow(
      `the job registry ${missing} does not exist`,
    );
    const lone = join(scratch(), "jobs.mjs");
    writeFileSync(lone, "export default { kinds: {} };\n");
    await expect(bundleThreadCode(pathToFileURL(lone).href)).rejects.toThrow(
      /no node_modules directory above/,
    );
  });

  it("names a registry that does not compile", async () => {
    const dir = scratch();
    const broken = join(dir, "jobs.ts");
    writeFileSync(broken, "export default { kinds: { ;\n");
    await expect(
      bundleThreadCode(pathToFileURL(broken).href, { cacheDir: join(dir, "cache") }),
    ).rejects.toThrow(/jobs\.ts/);
  });

  it("deletes bundles no pool has used for 30 days, keeps the rest", async () => {
    const cacheDir = join(scratch(), "cache");
    mkdirSync(cacheDir);
    const old = join(cacheDir, "thread-OLD.mjs");
    const recent = join(cacheDir, "thread-RECENT.mjs");
    const other = join(cacheDir, "notes.txt");
    for (const file of [old, recent, other]) writeFileSync(file, "");
    const longAgo = new Date(Date.now() - 31 * 86_400_000);
    utimesSync(old, longAgo, longAgo);
    utimesSync(other, longAgo, longAgo);
    utimesSync(recent, new Date(Date.now() - 29 * 86_400_000), new Date(Date.now() - 29 * 86_400_000));
    const url = await bundleThreadCode(registry, { cacheDir });
    expect(readdirSync(cacheDir).sort()).toEqual(
      [
        basename(fileURLToPath(url)),
        `${basename(fileURLToPath(url))}.map`,
        "notes.txt",
        "thread-RECENT.mjs",
      ].sort(),
    );
  });
});

describe.each(["tsx", "bundle"] as const)("a registry that throws as a thread loads it (%s)", (code) => {
  it("fails each job with its error, and the threads go on serving", async () => {
    const shy = new URL("../support/main-thread-jobs.ts", import.meta.url).href;
    const bundle = code === "bundle" ? { bundle: await bundleThreadCode(shy) } : {};
    const pool = new JobPool({ registry: shy, threads: 1, ...bundle });
    try {
      for (let i = 1; i <= 3; i++) {
        const failure = (await pool
          .run(
            { id: `j${i}`, attempt: 1, runAttempt: 1, priority: "normal", userId: undefined },
            JSON.stringify({ v: 1, kind: "hello", body: {} }),
            { signal: new AbortController().signal },
          )
          .catch((e: unknown) => e)) as JobFailure;
        expect(failure).toBeInstanceOf(JobFailure);
        expect(failure.message).toBe("this registry refuses to load in a worker thread");
      }
      expect(pool.threads).toBe(1);
    } finally {
      await pool.close();
    }
  });
});

describe("ratatoskr threads bundle", () => {
  it("builds the configured registry's bundle, as a start would, and names the file", async () => {
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [CLI, ...args], {
        encoding: "utf8",
        env: { ...process.env, RT_JOBS_MODULE: registry },
      });
    const made = cli("threads", "bundle");
    expect(made.stderr).toBe("");
    expect(made.status).toBe(0);
    const path = fileURLToPath(await bundleThreadCode(registry));
    expect(made.stdout.trim()).toBe(`worker threads' code for ${registry}: ${path}`);
    const wrong = cli("threads", "build");
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toMatch(/unknown threads command "build"/);
  });
});

describe("a bundle thread's options", () => {
  it("drops tsx's preloads, in either spelling, and keeps every other", () => {
    expect(
      bundleExecArgv([
        "--require",
        "/app/node_modules/tsx/dist/preflight.cjs",
        "--import",
        "file:///app/node_modules/tsx/dist/loader.mjs",
        "--import=tsx",
        "--import",
        "./otel.mjs",
        "--require=./env.cjs",
        "--no-warnings",
      ]),
    ).toEqual(["--import", "./otel.mjs", "--require=./env.cjs", "--no-warnings", "--enable-source-maps"]);
    expect(bundleExecArgv(["--enable-source-maps"])).toEqual(["--enable-source-maps"]);
  });
});
