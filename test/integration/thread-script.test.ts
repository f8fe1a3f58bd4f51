import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleFiles, bundleModuleOf } from "../../src/pool/bundle-files.js";
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
  const jobs = join(dir, "jobs.ts");
  write(
    jobs,
    [
      'import { Schema } from "effect";',
      `import { defineRegistry } from ${JSON.stringify(definition)};`,
      'import theDefault, { named, add, count } from "esm-only";',
      'import * as everything from "esm-only";',
      'import common from "cjs-only";',
      "export default defineRegistry({",
      "  kinds: {",
      "    imports: {",
      "      schema: Schema.Struct({}),",
      "      handler: async () => {",
      "        add();",
      '        const later = await import("esm-only");',
      "        return {",
      "          theDefault, named, common,",
      "          names: Object.keys(everything).sort(),",
      "          live: [count, everything.count],",
      "          sameModule: later.add === add,",
      "          meta: typeof import.meta.url,",
      "        };",
      "      },",
      "    },",
      "  },",
      "});",
      "",
    ].join("\n"),
  );
  return { dir, registry: pathToFileURL(jobs).href };
};

describe("a thread bundle run as a script", () => {
  let dir: string;
  let registry: string;
  let bundle: string;
  beforeAll(async () => {
    ({ dir, registry } = registryWithPackages());
    bundle = await bundleThreadCode(registry);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** One job in a fresh pool of one thread, the pool kept `linger` ms after (for its cache). */
  const runIn = async (options: { bundle?: string }, linger = 0) => {
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

  it("keeps V8's code cache, written by a warm thread, used by the next, replaced when not of this script", async () => {
    const { cache } = bundleFiles(bundleModuleOf(fileURLToPath(bundle)));
    rmSync(cache, { force: true });
    await runIn({ bundle }, WARM_MS + 700);
    const written = readFileSync(cache);
    const head = written.subarray(0, written.indexOf("\n") + 1).toString();
    expect(head).toMatch(/^[0-9a-f]{40}\n$/);
    const first = statSync(cache);

    // Taken by V8: not written again.
    await runIn({ bundle }, WARM_MS + 700);
    expect(statSync(cache).ino).toBe(first.ino);

    // Refused by V8 (not a cache at all): written again.
    writeFileSync(cache, Buffer.concat([Buffer.from(head), Buffer.from("not a code cache")]));
    await runIn({ bundle }, WARM_MS + 700);
    const rewritten = readFileSync(cache);
    expect(rewritten.subarray(0, head.length).toString()).toBe(head);
    expect(rewritten.includes("not a code cache")).toBe(false);
    expect(rewritten.length).toBeGreaterThan(100_000);

    // V8's cache of this script, named for another (V8 checks only the length of the source):
    // not used, written again.
    const other = `${"0".repeat(40)}\n`;
    writeFileSync(cache, Buffer.concat([Buffer.from(other), written.subarray(head.length)]));
    await runIn({ bundle }, WARM_MS + 700);
    expect(readFileSync(cache).subarray(0, head.length).toString()).toBe(head);
  });
});
