import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { spawnSync } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { bundleExecArgv, JobPool, threadExecArgv, withoutRefused } from "../../src/pool/pool.js";
import { JobFailure } from "../../src/queue/failures.js";
import { bundleFiles, bundleModuleOf } from "../../src/pool/bundle-files.js";
import { builtAlready } from "../../src/pool/bundle-record.js";
import { bundleThreadCode } from "../../src/pool/thread-bundle.js";
import { CLI } from "../support/processes.js";

const registry = new URL("../support/jobs.ts", import.meta.url).href;
const scratch = () => mkdtempSync(join(tmpdir(), "rt-bundle-"));
/** The bundle's code, in its ES module, from the URL a build returns (the module its threads load). */
const codeOf = (url: string) => readFileSync(bundleModuleOf(fileURLToPath(url)), "utf8");

/** A registry of two files in a directory of its own, and a cache directory beside them. */
const twoFileRegistry = () => {
  const dir = scratch();
  const jobs = join(dir, "jobs.mjs");
  const helper = join(dir, "helper.mjs");
  writeFileSync(helper, "export const greeting = 'hello';\n");
  writeFileSync(jobs, "import { greeting } from './helper.mjs';\nexport default { kinds: {}, greeting };\n");
  return { cacheDir: join(dir, "cache"), jobs, helper };
};

describe("thread bundle", () => {
  it("is kept under the node_modules nearest the registry, named by its content", async () => {
    const url = await bundleThreadCode(registry);
    const root = fileURLToPath(new URL("../../", import.meta.url));
    // Threads load the module that runs the bundle as a script, beside the bundle's module.
    expect(dirname(fileURLToPath(url))).toBe(join(root, "node_modules", ".cache", "ratatoskr"));
    expect(basename(fileURLToPath(url))).toMatch(/^thread-[A-Z0-9]+\.start\.mjs$/);
    const path = bundleModuleOf(fileURLToPath(url));
    expect(basename(path)).toMatch(/^thread-[A-Z0-9]+\.mjs$/);
    // It runs the script with a copy of thread-script.js of its own, beside it: a process that
    // runs on after an upgrade replaced the package starts its threads with the code it had.
    const { loader } = bundleFiles(path);
    expect(readFileSync(fileURLToPath(url), "utf8")).toContain(`from "./${basename(loader)}";`);
    expect(readFileSync(loader, "utf8")).toBe(
      readFileSync(new URL("../../src/pool/thread-script.js", import.meta.url), "utf8"),
    );
    // The same sources give the same file: processes share it, nothing is rewritten.
    expect(await bundleThreadCode(registry)).toBe(url);
    const code = readFileSync(path, "utf8");
    // The thread code's own packages are in the bundle (the registry's imports of them too),
    // and what they import in turn (ioredis imports denque): this registry's bundle imports
    // nothing but Node's builtins.
    const imported = [...code.matchAll(/^import .* from "([^"]+)";$/gm)].map((match) => match[1]);
    expect(imported.length).toBeGreaterThan(0);
    expect(imported.filter((specifier) => !specifier!.startsWith("node:"))).toEqual([]);
    expect(code).toContain("node_modules/denque/");
    // `import { Schema } from "effect"` (the registry's, the thread code's) took effect's
    // modules from their own files, not through its index, which would run all 175 of them as
    // the thread loads (fast-check with them).
    expect(code).toContain("node_modules/effect/dist/esm/Schema.js");
    expect(code).not.toContain("node_modules/effect/dist/esm/index.js");
    expect(code).not.toContain("node_modules/effect/dist/esm/Stream.js");
    expect(code).not.toContain("node_modules/fast-check/");
    expect(code).toContain(`//# sourceMappingURL=${basename(path)}.map`);
    // Its map leaves the bundled packages out: a thread parses all of it as it loads the bundle.
    const { sources } = JSON.parse(readFileSync(`${path}.map`, "utf8")) as { sources: string[] };
    expect(sources.some((source) => source.endsWith("test/support/jobs.ts"))).toBe(true);
    expect(sources.some((source) => source.includes("node_modules/"))).toBe(false);
  });

  it("keeps every other package an import, resolved from where the registry's imports resolve", async () => {
    const url = await bundleThreadCode(new URL("../../src/jobs/index.ts", import.meta.url).href);
    const code = codeOf(url);
    expect(code).toMatch(/from "@mikro-orm\/core"/);
    expect(code).toMatch(/from "sharp"/);
    expect(code).not.toMatch(/from "effect/);
  });

  it("is used again without a build while every file it was built from reads the same", async () => {
    const { cacheDir, jobs, helper } = twoFileRegistry();
    const registryUrl = pathToFileURL(jobs).href;
    const first = fileURLToPath(await bundleThreadCode(registryUrl, { cacheDir }));
    const records = readdirSync(cacheDir).filter((name) => name.endsWith(".json"));
    expect(records).toHaveLength(1);
    const recordPath = join(cacheDir, records[0]!);
    const record = JSON.parse(readFileSync(recordPath, "utf8")) as {
      bundle: string;
      inputs: Record<string, object>;
    };
    expect(record.bundle).toBe(basename(first));
    expect(Object.keys(record.inputs)).toEqual(
      expect.arrayContaining([
        jobs,
        helper,
        fileURLToPath(new URL("../../src/pool/thread.ts", import.meta.url)),
      ]),
    );

    // A record is believed, not the build: pointed at another file, the next start loads that.
    const standIn = join(cacheDir, "thread-STANDIN.mjs");
    writeFileSync(standIn, readFileSync(bundleModuleOf(first)));
    writeFileSync(recordPath, JSON.stringify({ ...record, bundle: basename(standIn) }));
    expect(fileURLToPath(await bundleThreadCode(registryUrl, { cacheDir }))).toBe(standIn);

    // One input changed: built again, and the record names the new bundle.
    writeFileSync(helper, "export const greeting = 'hello again';\n");
    const second = fileURLToPath(await bundleThreadCode(registryUrl, { cacheDir }));
    expect(second).not.toBe(first);
    expect(second).not.toBe(standIn);
    expect(readFileSync(bundleModuleOf(second), "utf8")).toContain("hello again");
    expect((JSON.parse(readFileSync(recordPath, "utf8")) as { bundle: string }).bundle).toBe(
      basename(second),
    );

    // A record whose bundle is gone (the module threads load, or the script it runs), or that
    // cannot be read, only means a build.
    const { script, loader } = bundleFiles(bundleModuleOf(second));
    for (const gone of [second, script, loader]) {
      rmSync(gone);
      expect(fileURLToPath(await bundleThreadCode(registryUrl, { cacheDir }))).toBe(second);
      expect(existsSync(gone)).toBe(true);
    }
    for (const unusable of [
      "{ not json",
      "null",
      "{}",
      JSON.stringify({ bundle: "../elsewhere.mjs", inputs: {} }),
    ]) {
      writeFileSync(recordPath, unusable);
      expect(fileURLToPath(await bundleThreadCode(registryUrl, { cacheDir }))).toBe(second);
      expect((JSON.parse(readFileSync(recordPath, "utf8")) as { bundle: string }).bundle).toBe(
        basename(second),
      );
    }
  });

  it("believes a file's stat where it holds, reads the file where it does not, and misses no change", async () => {
    const { cacheDir, jobs, helper } = twoFileRegistry();
    // A modification time in whole seconds, which can be put back exactly.
    const past = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
    utimesSync(helper, past, past);
    // Files changed within 2 s of being read get no stat in the record (they could change again
    // and keep the same times): these are older, as checked-out sources usually are.
    await sleep(2_100);
    const registryUrl = pathToFileURL(jobs).href;
    const first = await bundleThreadCode(registryUrl, { cacheDir });
    const recordPath = join(
      cacheDir,
      readdirSync(cacheDir).find((name) => name.endsWith(".json"))!,
    );
    type Inputs = Record<string, { digest: string; stat?: string }>;
    const inputs = () => (JSON.parse(readFileSync(recordPath, "utf8")) as { inputs: Inputs }).inputs;
    const recorded = inputs();
    expect(recorded[helper]?.stat).toMatch(/^\d+:[\d.]+:[\d.]+:\d+$/);
    expect(recorded[jobs]?.stat).toBeDefined();

    // Touched, not changed (a checkout, a copy): the same bundle, no build; the record now holds
    // the file's new stat, or none while the change is that recent.
    const now = new Date();
    utimesSync(jobs, now, now);
    expect(await bundleThreadCode(registryUrl, { cacheDir })).toBe(first);
    const touched = inputs()[jobs]!;
    expect(touched.digest).toBe(recorded[jobs]!.digest);
    expect(touched.stat).not.toBe(recorded[jobs]!.stat);

    // Rewritten with the same size and its modification time put back: the change time still
    // moved, so the file is read, and the bundle built again.
    writeFileSync(helper, "export const greeting = 'howdy';\n");
    utimesSync(helper, past, past);
    const [size, mtimeMs] = recorded[helper]!.stat!.split(":");
    expect([statSync(helper).size, statSync(helper).mtimeMs]).toEqual([Number(size), Number(mtimeMs)]);
    const second = await bundleThreadCode(registryUrl, { cacheDir });
    expect(second).not.toBe(first);
    expect(codeOf(second)).toContain("howdy");
  });

  it("builds again after a file esbuild read itself changed while the build ran", async () => {
    const dir = scratch();
    const cacheDir = join(dir, "cache");
    const jobs = join(dir, "jobs.mjs");
    const data = join(dir, "data.json");
    writeFileSync(data, '{ "greeting": "hello" }\n');
    writeFileSync(
      jobs,
      "import data from './data.json' with { type: 'json' };\nexport default { kinds: {}, data };\n",
    );
    // Its times say it changed after the build began: what esbuild read of it may be older than
    // what the record would hash after the build.
    const later = new Date(Date.now() + 60_000);
    utimesSync(data, later, later);
    const registryUrl = pathToFileURL(jobs).href;
    await bundleThreadCode(registryUrl, { cacheDir });
    const recordPath = join(
      cacheDir,
      readdirSync(cacheDir).find((name) => name.endsWith(".json"))!,
    );
    const { inputs } = JSON.parse(readFileSync(recordPath, "utf8")) as {
      inputs: Record<string, { digest: string; stat?: string }>;
    };
    expect(inputs[data]).toEqual({ digest: "changed during the build" });
    expect(inputs[jobs]?.digest).toMatch(/^[0-9a-f]{40}$/);
    expect(await builtAlready(recordPath)).toBeUndefined();
  });

  it("records the files a bundled package's dependencies and the project's settings come from", async () => {
    const cacheDir = join(scratch(), "cache");
    const url = await bundleThreadCode(registry, { cacheDir });
    const records = readdirSync(cacheDir).filter((name) => name.startsWith("thread-build-"));
    expect(records).toHaveLength(1);
    const record = JSON.parse(readFileSync(join(cacheDir, records[0]!), "utf8")) as {
      bundle: string;
      inputs: object;
    };
    expect(record.bundle).toBe(basename(fileURLToPath(url)));
    const root = fileURLToPath(new URL("../../", import.meta.url));
    expect(Object.keys(record.inputs)).toEqual(
      expect.arrayContaining([
        join(root, "package.json"),
        join(root, "tsconfig.json"),
        join(root, "node_modules", "effect", "package.json"),
        // Read to place the names its index exports, though the bundle holds none of it.
        join(root, "node_modules", "effect", "dist", "esm", "index.js"),
        join(root, "node_modules", "fast-check", "lib", "esm", "fast-check.js"),
      ]),
    );
  });

  it("bundles what a `#` import names in the application, and replaces a map made another way", async () => {
    const dir = scratch();
    const cacheDir = join(dir, "cache");
    writeFileSync(
      join(dir, "package.json"),
      JSON.stringify({ type: "module", imports: { "#helper": "./helper.mjs" } }),
    );
    writeFileSync(join(dir, "helper.mjs"), "export const greeting = 'from the helper';\n");
    writeFileSync(
      join(dir, "jobs.mjs"),
      "import { greeting } from '#helper';\nexport default { kinds: {}, greeting };\n",
    );
    const loaded = fileURLToPath(
      await bundleThreadCode(pathToFileURL(join(dir, "jobs.mjs")).href, { cacheDir }),
    );
    const path = bundleModuleOf(loaded);
    const code = readFileSync(path, "utf8");
    expect(code).toContain("from the helper");
    expect(code).not.toContain("#helper");

    const map = readFileSync(`${path}.map`, "utf8");
    writeFileSync(`${path}.map`, "{}");
    for (const name of readdirSync(cacheDir))
      if (name.startsWith("thread-build-")) rmSync(join(cacheDir, name));
    expect(
      fileURLToPath(await bundleThreadCode(pathToFileURL(join(dir, "jobs.mjs")).href, { cacheDir })),
    ).toBe(loaded);
    expect(readFileSync(`${path}.map`, "utf8")).toBe(map);
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
    const oldRecord = join(cacheDir, "thread-build-0123456789abcdef.json");
    const other = join(cacheDir, "notes.txt");
    for (const file of [old, oldRecord, recent, other]) writeFileSync(file, "");
    const longAgo = new Date(Date.now() - 31 * 86_400_000);
    utimesSync(old, longAgo, longAgo);
    utimesSync(oldRecord, longAgo, longAgo);
    utimesSync(other, longAgo, longAgo);
    utimesSync(recent, new Date(Date.now() - 29 * 86_400_000), new Date(Date.now() - 29 * 86_400_000));
    const url = await bundleThreadCode(registry, { cacheDir });
    const record = readdirSync(cacheDir).find(
      (name) => name.startsWith("thread-build-") && name !== basename(oldRecord),
    );
    expect(record).toMatch(/^thread-build-[0-9a-f]{16}\.json$/);
    const { cache, ...written } = bundleFiles(bundleModuleOf(fileURLToPath(url)));
    expect(basename(cache)).toMatch(/^thread-/);
    expect(readdirSync(cacheDir).sort()).toEqual(
      [
        ...Object.values(written).map((path) => basename(path)),
        record,
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
  it("builds the configured registry's bundle, as a start would, and its code cache, and names them", async () => {
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [CLI, ...args], {
        encoding: "utf8",
        env: { ...process.env, RT_JOBS_MODULE: registry },
      });
    const path = fileURLToPath(await bundleThreadCode(registry));
    // And the code cache, which a thread of this V8 writes for threads that may not write it.
    const { cache } = bundleFiles(bundleModuleOf(path));
    rmSync(cache, { force: true });
    const made = cli("threads", "bundle");
    expect(made.stderr).toBe("");
    expect(made.status).toBe(0);
    expect(made.stdout.trim().split("\n")).toEqual([
      `worker threads' code for ${registry}: ${path}`,
      `its code cache: ${cache}`,
    ]);
    const file = readFileSync(cache);
    expect(file.subarray(0, file.indexOf("\n")).toString()).toMatch(/^[0-9a-f]{64} [0-9a-f]{64}$/);
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
    ).toEqual(["--import", "./otel.mjs", "--require=./env.cjs", "--no-warnings"]);
    // Source maps are not turned on for the threads (bundle-stacks.ts maps their stacks); the
    // process's own choice is kept.
    expect(bundleExecArgv([])).toEqual([]);
    expect(bundleExecArgv(["--enable-source-maps"])).toEqual(["--enable-source-maps"]);
  });
});

describe("a process started with V8's or its own options", () => {
  it("gives its bundle threads its own options when tsx is not among them, else the rest without the refused", () => {
    expect(threadExecArgv(["--max-old-space-size=4096", "--expose-gc"])).toBeUndefined();
    expect(threadExecArgv(["--max-old-space-size=4096", "--import", "tsx"])).toEqual([
      "--max-old-space-size=4096",
    ]);
    const refusal = Object.assign(
      new Error("Initiated Worker with invalid execArgv flags: --title, --max-old-space-size=64"),
      { code: "ERR_WORKER_INVALID_EXEC_ARGV" },
    );
    expect(withoutRefused(["--title", "rt", "--max-old-space-size=64", "--no-warnings"], refusal)).toEqual([
      "--no-warnings",
    ]);
    // Not a refusal, or one of nothing listed: the error stands.
    expect(
      withoutRefused(["--title", "rt"], new Error("Initiated Worker with invalid execArgv flags: --title")),
    ).toBeUndefined();
    expect(withoutRefused(["--no-warnings"], refusal)).toBeUndefined();
  });

  // Node refuses V8's options (and the process's own) in a thread's option list: given the
  // process's list as it was, `node --max-old-space-size=4096` could not start its pool.
  it.each([
    ["compiled", [] as string[]],
    ["through tsx", ["--import", "tsx"]],
  ])("runs its jobs in bundle threads (%s)", async (_, loader) => {
    const dir = scratch();
    const script = join(dir, "run.mjs");
    writeFileSync(
      script,
      [
        `const { register } = await import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))});`,
        loader.length === 0 ? "register();" : "",
        `const { JobPool } = await import(${JSON.stringify(new URL("../../src/pool/pool.ts", import.meta.url).href)});`,
        `const { bundleThreadCode } = await import(${JSON.stringify(new URL("../../src/pool/thread-bundle.ts", import.meta.url).href)});`,
        `const registry = ${JSON.stringify(registry)};`,
        "const pool = new JobPool({ registry, threads: 1, bundle: await bundleThreadCode(registry) });",
        "const job = { id: 'j1', attempt: 1, runAttempt: 1, priority: 'normal', userId: undefined };",
        "const data = JSON.stringify({ v: 1, kind: 'echo', body: { text: 'hi' } });",
        "console.log(await pool.run(job, data, { signal: new AbortController().signal }));",
        "await pool.close();",
      ].join("\n"),
    );
    const child = spawnSync(
      process.execPath,
      ["--max-old-space-size=256", "--expose-gc", "--title", "rt-test", ...loader, script],
      { encoding: "utf8", cwd: fileURLToPath(new URL("../../", import.meta.url)) },
    );
    expect(child.stderr).not.toMatch(/invalid execArgv/);
    expect(child.stdout.trim(), child.stderr).toBe(JSON.stringify({ echoed: "hi" }));
    expect(child.status).toBe(0);
  });
});
