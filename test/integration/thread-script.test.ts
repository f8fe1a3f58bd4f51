import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleFiles, bundleModuleOf } from "../../src/pool/bundle-files.js";
import { codeCacheTaken } from "../../src/pool/code-cache.js";
import { JobPool } from "../../src/pool/pool.js";
import { bundleThreadCode } from "../../src/pool/thread-bundle.js";

/** thread-script.js writes a missing cache this long after a thread loads the script. */
const WARM_MS = 2_000;

const write = (path: string, text: string) => {
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, text);
};

/**
 * A registry in a directory of its own (inside the project, so that `effect` resolves) with a
 * node_modules of two packages the bundle leaves as imports: one an ES module only, which a
 * script could not `require`, and one CommonJS.
 */
const registryWithPackages = () => {
  const root = fileURLToPath(new URL("../../node_modules/.cache/", import.meta.url));
  mkdirSync(root, { recursive: true });
  const dir = mkdtempSync(join(root, "rt-script-"));
  write(join(dir, "package.json"), JSON.stringify({ type: "module" }));
  const modules = join(dir, "node_modules");
  write(
    join(modules, "esm-only", "package.json"),
    JSON.stringify({ name: "esm-only", type: "module", exports: { ".": { import: "./index.js" } } }),
  );
  write(
    join(modules, "esm-only", "index.js"),
    "export default 'the default';\nexport const named = 'a named export';\nexport let count = 0;\nexport const add = () => ++count;\n",
  );
  write(join(modules, "cjs-only", "package.json"), JSON.stringify({ name: "cjs-only", main: "index.js" }));
  write(join(modules, "cjs-only", "index.js"), "module.exports = { value: 'from CommonJS' };\n");
  const definition = fileURLToPath(new URL("../../src/jobs/definition.ts", import.meta.url));
  /** A registry file of one kind, `imports`, whose handler is `handler`'s lines. */
  const registryFile = (name: string, imports: string[], handler: string[]) => {
    const path = join(dir, name);
    const head = [
      'import { Schema } from "effect";',
      `import { defineRegistry } from ${JSON.stringify(definition)};`,
    ];
    write(
      path,
      [
        ...head,
        ...imports,
        "export default defineRegistry({",
        "  kinds: { imports: { schema: Schema.Struct({}), handler: async () => {",
        ...handler,
        "  } } },",
        "});",
        "",
      ].join("\n"),
    );
    return path;
  };
  const jobs = registryFile(
    "jobs.ts",
    [
      'import theDefault, { named, add, count } from "esm-only";',
      'import * as everything from "esm-only";',
      'import common from "cjs-only";',
    ],
    [
      "add();",
      'const later = await import("esm-only");',
      "return {",
      "  theDefault, named, common,",
      "  names: Object.keys(everything).sort(),",
      "  live: [count, everything.count],",
      "  sameModule: later.add === add,",
      "  meta: typeof import.meta.url,",
      "};",
    ],
  );
  // A registry that imports what a package does not export: the module fails to link.
  const missing = registryFile(
    "missing-jobs.ts",
    ['import { missing } from "esm-only";'],
    ["return String(missing);"],
  );
  return { dir, registry: pathToFileURL(jobs).href, missing: pathToFileURL(missing).href };
};

describe("a thread bundle run as a script", () => {
  let dir: string;
  let registry: string;
  let missing: string;
  let bundle: string;
  beforeAll(async () => {
    ({ dir, registry, missing } = registryWithPackages());
    bundle = await bundleThreadCode(registry);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** One job in a fresh pool of one thread, the pool kept `linger` ms after (for its cache). */
  const runIn = async (options: { bundle?: string; registry?: string }, linger = 0) => {
    const pool = new JobPool({ registry, threads: 1, ...options });
    try {
      const answer = await pool.run(
        { id: "j1", attempt: 1, runAttempt: 1, priority: "normal", userId: undefined },
        JSON.stringify({ v: 1, kind: "imports", body: {} }),
        { signal: new AbortController().signal },
      );
      await sleep(linger);
      return JSON.parse(answer ?? "null") as unknown;
    } finally {
      await pool.close();
    }
  };

  it("imports packages as the module did, and as the sources do through tsx", async () => {
    expect(fileURLToPath(bundle)).toBe(bundleFiles(bundleModuleOf(fileURLToPath(bundle))).start);
    const expected = {
      theDefault: "the default",
      named: "a named export",
      common: { value: "from CommonJS" },
      names: ["add", "count", "default", "named"],
      // An imported binding is live, in the module and in its namespace.
      live: [1, 1],
      sameModule: true,
      meta: "string",
    };
    expect(await runIn({ bundle })).toEqual(expected);
    expect(await runIn({})).toEqual(expected);
    // The bundle's module, loaded itself (where a bundle cannot be a script), answers alike.
    expect(await runIn({ bundle: pathToFileURL(bundleModuleOf(fileURLToPath(bundle))).href })).toEqual(
      expected,
    );
  });

  it("fails to load a registry that imports what a package does not export, as the module does", async () => {
    const script = await bundleThreadCode(missing);
    const module = pathToFileURL(bundleModuleOf(fileURLToPath(script))).href;
    expect(script).not.toBe(module);
    const failures = [];
    for (const code of [script, module]) {
      failures.push(
        await runIn({ bundle: code, registry: missing }).then(
          () => "ran",
          (error: unknown) => String(error),
        ),
      );
    }
    expect(failures[0]).toMatch(/does not provide an export named 'missing'/);
    expect(failures[1]).toBe(failures[0]);
  });

  it("keeps V8's code cache, written by a warm thread, used by the next, replaced when not of this script or damaged", async () => {
    const { cache, script } = bundleFiles(bundleModuleOf(fileURLToPath(bundle)));
    const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
    /** The cache's two digests (of the script it was made from, of its data) and its data. */
    const read = () => {
      const file = readFileSync(cache);
      const end = file.indexOf("\n");
      const [madeFrom, ofData] = file.subarray(0, end).toString().split(" ");
      return { madeFrom, ofData, data: file.subarray(end + 1) };
    };
    const write = (madeFrom: string, data: Uint8Array, ofData = sha256(data)) =>
      writeFileSync(cache, Buffer.concat([Buffer.from(`${madeFrom} ${ofData}\n`), data]));
    const scriptDigest = sha256(readFileSync(script));

    rmSync(cache, { force: true });
    expect(codeCacheTaken(bundle)).toBe(false);
    await runIn({ bundle }, WARM_MS + 700);
    expect(codeCacheTaken(bundle)).toBe(true);
    // V8 refuses a cache made under other V8 flags: a process run with one more says so.
    const taken = (flags: string[]) =>
      execFileSync(
        process.execPath,
        [
          ...flags,
          "--input-type=module",
          "-e",
          `import { cacheTaken } from ${JSON.stringify(new URL("../../src/pool/thread-script.js", import.meta.url).href)};
          console.log(cacheTaken(${JSON.stringify(script)}));`,
        ],
        { encoding: "utf8", timeout: 30_000 },
      ).trim();
    expect(taken([])).toBe("true");
    expect(taken(["--expose-gc"])).toBe("false");
    // A bundle run as a module has no cache to take.
    expect(codeCacheTaken(pathToFileURL(bundleModuleOf(fileURLToPath(bundle))).href)).toBe(false);
    const first = read();
    expect(first.madeFrom).toBe(scriptDigest);
    expect(first.ofData).toBe(sha256(first.data));
    expect(first.data.length).toBeGreaterThan(100_000);
    const written = statSync(cache);

    // Taken by V8: not written again.
    await runIn({ bundle }, WARM_MS + 700);
    expect(statSync(cache).ino).toBe(written.ino);

    // Each case below is not used (a damaged cache would crash the whole process), and the
    // thread writes the cache again.
    const cases: Array<[string, () => void]> = [
      // Refused by V8: not a cache at all.
      ["not V8's", () => write(scriptDigest, Buffer.from("not a code cache"))],
      // V8's cache of this script, said to be of another (V8 checks only the source's length).
      ["of another script", () => write("0".repeat(64), first.data)],
      // Damaged in the middle, where V8 does not look: its digest no longer holds.
      [
        "damaged",
        () => {
          const damaged = Buffer.from(first.data);
          damaged.fill(0, damaged.length >> 1, (damaged.length >> 1) + 4096);
          write(scriptDigest, damaged, first.ofData);
        },
      ],
    ];
    for (const [what, spoil] of cases) {
      spoil();
      // What the benchmark asks before it keeps a cache it finds.
      expect(codeCacheTaken(bundle), what).toBe(false);
      const before = statSync(cache).ino;
      expect(await runIn({ bundle }, WARM_MS + 700), what).toMatchObject({ theDefault: "the default" });
      expect(statSync(cache).ino, what).not.toBe(before);
      expect(codeCacheTaken(bundle), what).toBe(true);
      expect(read(), what).toMatchObject({ madeFrom: scriptDigest, ofData: sha256(read().data) });
    }

    // Where it cannot be written (here a directory in its place; a read-only install), the jobs
    // still run, and the thread says so once.
    rmSync(cache);
    mkdirSync(cache);
    const said: string[] = [];
    const toStderr = process.stderr.write;
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      said.push(String(chunk));
      return (toStderr as (...args: unknown[]) => boolean).call(process.stderr, chunk, ...rest);
    }) as typeof process.stderr.write;
    try {
      expect(await runIn({ bundle }, WARM_MS + 700)).toMatchObject({ theDefault: "the default" });
    } finally {
      process.stderr.write = toStderr;
      rmSync(cache, { recursive: true });
    }
    const warnings = said
      .join("")
      .split("\n")
      .filter((line) => line.includes("RATATOSKR_CODE_CACHE"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(
      `the worker threads' code cache ${cache} is missing and cannot be written here`,
    );
  });
});
