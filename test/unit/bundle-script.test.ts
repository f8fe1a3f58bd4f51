import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";
import { scriptOfBundle, startModule } from "../../src/pool/bundle-script.js";
import { composeMaps, type RawSourceMap, SourceMapLookup } from "../../src/pool/source-map.js";
import { loadThreadScript } from "../../src/pool/thread-script.js";

const BANNER = "// the banner";

/** `source` bundled as thread-bundle.ts bundles (an ES module, a linked map), `external` left imports. */
const moduleOf = async (source: string, external: string[] = []) => {
  const dir = mkdtempSync(join(tmpdir(), "rt-script-"));
  const entry = join(dir, "entry.ts");
  writeFileSync(entry, source);
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    banner: { js: BANNER },
    sourcemap: "external",
    sourcesContent: false,
    outdir: dir,
    external,
    write: false,
    logLevel: "silent",
  });
  const file = (ending: string) => result.outputFiles.find((f) => f.path.endsWith(ending))!;
  return { dir, entry, code: file(".js").text, map: JSON.parse(file(".js.map").text) as RawSourceMap };
};

describe("a bundle's module as a script", () => {
  it("runs as the module does: imports read live, defaults as defaults, strict, its own import()", async () => {
    const { dir, code } = await moduleOf(
      [
        'import theDefault, { named, count, bump } from "esm-pkg";',
        'import * as all from "esm-pkg";',
        'import { sep } from "node:path";',
        "export default () => {",
        "  bump();",
        "  return {",
        "    theDefault, named, live: [count, all.count], keys: Object.keys(all).sort(),",
        "    sep, meta: import.meta.url,",
        "    strict: (function () { return this; })() === undefined,",
        '    later: import("./later.mjs").then((m) => m.value),',
        "  };",
        "};",
        "",
      ].join("\n"),
      ["esm-pkg", "./later.mjs"],
    );
    const made = await scriptOfBundle(code, BANNER);
    expect(made).toBeDefined();
    expect(made!.imports).toEqual(["esm-pkg", "node:path"]);

    // What a start module would hand it: these namespaces, its import.meta, its import().
    writeFileSync(
      join(dir, "esm-pkg.mjs"),
      "export default 'the default'; export const named = 'named';\nexport let count = 0; export const bump = () => ++count;\n",
    );
    writeFileSync(join(dir, "later.mjs"), "export const value = 'imported later';\n");
    const scriptPath = join(dir, "thread-T.script.js");
    writeFileSync(scriptPath, made!.script);
    const meta = { url: pathToFileURL(join(dir, "thread-T.start.mjs")).href } as ImportMeta;
    const run = loadThreadScript(
      pathToFileURL(scriptPath),
      {
        "esm-pkg": await import(pathToFileURL(join(dir, "esm-pkg.mjs")).href),
        "node:path": await import("node:path"),
      },
      meta,
      (specifier: string) => import(new URL(specifier, meta.url).href),
    ) as () => Record<string, unknown>;
    const answer = run();
    expect({ ...answer, later: await answer.later }).toEqual({
      theDefault: "the default",
      named: "named",
      live: [1, 1],
      keys: ["bump", "count", "default", "named"],
      sep: "/",
      meta: meta.url,
      strict: true,
      later: "imported later",
    });
  });

  it("is not made where the module cannot be such a script: it runs as the module", async () => {
    const awaiting = await moduleOf("export default await Promise.resolve(1);\n");
    expect(await scriptOfBundle(awaiting.code, BANNER)).toBeUndefined();
    // (esbuild drops an external's attributes as it bundles; a module could still have them.)
    const attributes = `${BANNER}\nimport data from "./data.json" with { type: "json" };\nvar entry_default = data;\nexport {\n  entry_default as default\n};\n`;
    expect(await scriptOfBundle(attributes, BANNER)).toBeUndefined();
    expect(await scriptOfBundle(attributes.replace(' with { type: "json" }', ""), BANNER)).toBeDefined();
    // A name the script would give the module's own `require`, `import.meta` or `import()`.
    const taken = await moduleOf("export default () => globalThis.$imprt;\n");
    expect(await scriptOfBundle(taken.code, BANNER)).toBeUndefined();
    const plain = await moduleOf("export default 1;\n");
    expect(await scriptOfBundle(plain.code, "// another banner")).toBeUndefined();
    expect(await scriptOfBundle(plain.code, BANNER)).toBeDefined();
  });

  it("has a start module that makes the module's imports again, and hands each namespace over once", async () => {
    const made = {
      script: "",
      map: { version: 3, sources: [], names: [], mappings: "" },
      statements: ['import a, { b } from "a"', 'import * as c from "b\\"c"', 'import { d } from "a"'],
      imports: ["a", 'b"c'],
    };
    const text = startModule(made, "thread-X.script.js", "file:///loader.js");
    expect(text.split("\n").slice(0, 6)).toEqual([
      'import a, { b } from "a";',
      'import * as c from "b\\"c";',
      'import { d } from "a";',
      'import * as $imprt0 from "a";',
      'import * as $imprt1 from "b\\"c";',
      'import { loadThreadScript as $imprtLoad } from "file:///loader.js";',
    ]);
    expect(text).toContain('{ "a": $imprt0, "b\\"c": $imprt1 }');
    expect(text).toContain('new URL("./thread-X.script.js", import.meta.url)');
  });

  it("is not made where es-module-lexer cannot read the module (the module runs instead)", async () => {
    // A regular expression after a block, which es-module-lexer reads as a division.
    const code = `${BANNER}\nvar f = (s) => { { s = s.trim(); }\n/['"]/.test(s) && s; };\nvar entry_default = f;\nexport {\n  entry_default as default\n};\n`;
    expect(await scriptOfBundle(code, BANNER)).toBeUndefined();
  });
});

describe("composed source maps", () => {
  it("map the script's positions to the sources, through the module", async () => {
    const source = [
      "export const where = (): string => {",
      "  const error = new Error('here');",
      "  return String(error);",
      "};",
      "",
    ].join("\n");
    const { code, map } = await moduleOf(source);
    const made = await scriptOfBundle(code, BANNER);
    const composed = composeMaps(made!.map, map);
    expect(composed.sources).toEqual(map.sources);
    // Where `new Error` is in the script, the composed map finds it in the source.
    const lines = made!.script.split("\n");
    const line = lines.findIndex((text) => text.includes("new Error("));
    const found = new SourceMapLookup(composed).find(line, lines[line]!.indexOf("new Error("));
    expect(found).toMatchObject({ line: 1, column: source.split("\n")[1]!.indexOf("new Error(") });
    expect(found!.source.endsWith("entry.ts")).toBe(true);
    // Code that maps to nothing in the module (esbuild's helpers) maps to nothing.
    expect(new SourceMapLookup(composed).find(1, 0)).toBeUndefined();
  });
});
