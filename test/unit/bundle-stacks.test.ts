import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { runInThisContext } from "node:vm";
import { build } from "esbuild";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mapBundleStacks } from "../../src/pool/bundle-stacks.js";

const SOURCE = [
  "export const where = (): string => {",
  "  const error = new Error('here');",
  "  return error.stack ?? '';",
  "};",
  "",
].join("\n");

/**
 * A small bundle of SOURCE and its map, beside it as thread-bundle.ts writes them, and its
 * `where`. Run as a script named by the bundle's URL, as a thread's ES module is: imported here,
 * the test runner would load it through a transform of its own.
 */
const bundleOf = async (options: { map: boolean | string; dir?: string }) => {
  const dir = join(mkdtempSync(join(tmpdir(), "rt-stacks-")), options.dir ?? "");
  mkdirSync(dir, { recursive: true });
  const source = join(dir, "where.ts");
  writeFileSync(source, SOURCE);
  const outfile = join(dir, "thread-TEST.mjs");
  await build({
    entryPoints: [source],
    outfile,
    bundle: true,
    format: "iife",
    globalName: "whereBundle",
    platform: "node",
    sourcemap: "linked",
    sourcesContent: false,
    logLevel: "silent",
  });
  if (options.map === false) writeFileSync(`${outfile}.map`, "");
  else if (typeof options.map === "string") writeFileSync(`${outfile}.map`, options.map);
  const url = pathToFileURL(outfile).href;
  const where = () => {
    runInThisContext(readFileSync(outfile, "utf8"), { filename: url });
    return (globalThis as unknown as { whereBundle: { where: () => string } }).whereBundle.where();
  };
  return { source, url, where };
};

describe("a bundle thread's stack traces", () => {
  // The test runner formats stacks with a hook of its own. A thread starts with Node's, which
  // writes the header and each frame as it describes itself (Node's errors' codes aside).
  const original = Error.prepareStackTrace;
  const nodeLike = (error: Error, sites: NodeJS.CallSite[]) =>
    [Error.prototype.toString.call(error), ...sites.map((site) => `    at ${String(site)}`)].join("\n");
  beforeEach(() => {
    Error.prepareStackTrace = nodeLike;
  });
  afterEach(() => {
    Error.prepareStackTrace = original;
  });

  it("name the source file's line and column, and keep the rest of each line as V8 writes it", async () => {
    const { source, url, where } = await bundleOf({ map: true });
    mapBundleStacks(url);
    const lines = where().split("\n");
    expect(lines[0]).toBe("Error: here");
    expect(lines[1]).toBe(`    at Object.where (${source}:2:17)`);
    // Frames outside the bundle are untouched.
    expect(lines.slice(2).every((line) => line.startsWith("    at ") && !line.includes(url))).toBe(true);
  });

  it("name the bundle's own lines where there is no map, or one that does not read", async () => {
    for (const map of [
      false,
      "{ not json",
      JSON.stringify({ version: 3, sources: ["x.ts"], names: [], mappings: "A!" }),
    ]) {
      const { url, where } = await bundleOf({ map });
      mapBundleStacks(url);
      const lines = where().split("\n");
      expect(lines[0]).toBe("Error: here");
      expect(lines[1]).toMatch(
        new RegExp(`^    at Object.where \\(${url.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:\\d+:\\d+\\)$`),
      );
    }
  });

  it("name a source whose path has characters a URL escapes, or a replacement pattern, as it is", async () => {
    const { source, url, where } = await bundleOf({ map: true, dir: "a$&b ü#x%41" });
    expect(source).toContain("a$&b ü#x%41");
    mapBundleStacks(url);
    expect(where().split("\n")[1]).toBe(`    at Object.where (${source}:2:17)`);
  });

  it("hand the formatter there was each frame as its source, and begin Node's errors with their code without one", async () => {
    const { source, url, where } = await bundleOf({ map: true });
    const seen: Array<[string | null, number | null, number | null]> = [];
    Error.prepareStackTrace = (error, sites) => {
      for (const site of sites) seen.push([site.getFileName(), site.getLineNumber(), site.getColumnNumber()]);
      return nodeLike(error, sites);
    };
    mapBundleStacks(url);
    where();
    expect(seen[0]).toEqual([source, 2, 17]);

    // With none there (Node 20 before its hook was public), the stack is written here.
    (Error as { prepareStackTrace?: unknown }).prepareStackTrace = undefined;
    mapBundleStacks(url);
    expect(where().split("\n").slice(0, 2)).toEqual(["Error: here", `    at Object.where (${source}:2:17)`]);
    const error = (() => {
      try {
        Buffer.alloc(-1);
      } catch (caught) {
        return caught as Error;
      }
    })();
    expect(error?.stack?.split("\n")[0]).toMatch(
      /^RangeError \[ERR_OUT_OF_RANGE\]: The value of "size" is out of range/,
    );
  });

  it("never throw, whatever they are handed, and whatever the formatter there was does", async () => {
    const { url } = await bundleOf({ map: true });
    Error.prepareStackTrace = () => {
      throw new Error("a formatter's own bug");
    };
    mapBundleStacks(url);
    const format = Error.prepareStackTrace;
    const odd = [
      {} as NodeJS.CallSite,
      { getFileName: () => url, toString: () => "odd" } as unknown as NodeJS.CallSite,
    ];
    expect(format(Object.create(null) as Error, odd)).toBe("Error\n    at [object Object]\n    at odd");
  });
});
