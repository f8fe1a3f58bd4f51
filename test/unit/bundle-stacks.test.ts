import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { runInThisContext } from "node:vm";
import { build } from "esbuild";
import { afterEach, describe, expect, it } from "vitest";
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
const bundleOf = async (options: { map: boolean | string }) => {
  const dir = mkdtempSync(join(tmpdir(), "rt-stacks-"));
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
  const original = Error.prepareStackTrace;
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
});
