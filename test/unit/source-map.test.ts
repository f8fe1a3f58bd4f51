import { SourceMap, type SourceMapPayload } from "node:module";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { beforeAll, describe, expect, it } from "vitest";
import { type RawSourceMap, SourceMapLookup, withoutSources } from "../../src/pool/source-map.js";

/** Node's type asks for every field a map may have. */
const payload = (map: RawSourceMap): SourceMapPayload =>
  ({
    file: "",
    sourceRoot: "",
    sourcesContent: [],
    ...map,
    sources: [...map.sources],
    names: [...map.names],
    version: 3,
  }) as SourceMapPayload;

const sourceAt = (map: SourceMap, line: number, column: number) =>
  (map.findEntry(line, column) as { originalSource?: string }).originalSource;

const isPackage = (source: string) => source.includes("/node_modules/");

/** A real map: the thread code with its packages bundled, as esbuild writes it. */
let map: SourceMapPayload;
let lineCount: number;

beforeAll(async () => {
  const result = await build({
    entryPoints: [fileURLToPath(new URL("../../src/pool/thread.ts", import.meta.url))],
    bundle: true,
    format: "esm",
    platform: "node",
    sourcemap: "external",
    sourcesContent: false,
    outdir: "/virtual",
    write: false,
    logLevel: "silent",
  });
  map = JSON.parse(result.outputFiles.find((f) => f.path.endsWith(".map"))!.text) as SourceMapPayload;
  lineCount = result.outputFiles.find((f) => f.path.endsWith(".js"))!.text.split("\n").length;
});

describe("a source map without some of its sources", () => {
  it("is the same map when nothing is dropped", () => {
    const kept = withoutSources(map, () => false);
    expect(kept.mappings).toBe(map.mappings);
    expect(kept.sources).toEqual(map.sources);
    expect(kept.names).toEqual(map.names);
  });

  it("maps every position in kept code as before, and positions in dropped code to nothing", () => {
    const trimmed = withoutSources(map, isPackage);
    expect(trimmed.sources.some(isPackage)).toBe(false);
    expect(trimmed.sources.length).toBeGreaterThan(0);
    expect(trimmed.mappings.length).toBeLessThan(map.mappings.length / 4);
    const before = new SourceMap(map);
    const after = new SourceMap(payload(trimmed));
    let ours = 0;
    let theirs = 0;
    for (let line = 0; line < lineCount; line++) {
      for (const column of [0, 3, 10, 25, 60]) {
        const was = before.findEntry(line, column) as { originalSource?: string };
        const is = after.findEntry(line, column) as { originalSource?: string };
        if (was.originalSource === undefined) continue;
        if (isPackage(was.originalSource)) {
          theirs++;
          expect(is.originalSource).toBeUndefined();
        } else {
          ours++;
          expect(is).toEqual(was);
        }
      }
    }
    // Both kinds of code were looked at.
    expect(ours).toBeGreaterThan(100);
    expect(theirs).toBeGreaterThan(1000);
  });

  it("renumbers the names and contents it keeps, and refuses mappings that are not base64 VLQ", () => {
    const small: RawSourceMap = {
      version: 3,
      sources: ["drop.js", "keep.ts"],
      sourcesContent: ["dropped", "kept"],
      names: ["dropName", "keepName"],
      // Line 0: a segment in drop.js (name 0), then one in keep.ts (name 1). Line 1: keep.ts.
      mappings: "AAAAA,KCAAC;ADCA",
    };
    const trimmed = withoutSources(small, (source) => source === "drop.js");
    expect(trimmed).toEqual({
      version: 3,
      sources: ["keep.ts"],
      sourcesContent: ["kept"],
      names: ["keepName"],
      mappings: "A,KAAAA;A;",
    });
    const after = new SourceMap(payload(trimmed));
    expect(after.findEntry(0, 6)).toMatchObject({ originalSource: "keep.ts", name: "keepName" });
    expect(sourceAt(after, 0, 2)).toBeUndefined();
    expect(sourceAt(after, 1, 4)).toBeUndefined();
    expect(() => withoutSources({ ...small, mappings: "AA!A" }, () => false)).toThrow(/hold "!"/);
    expect(() => withoutSources({ ...small, mappings: "AAAg" }, () => false)).toThrow(/inside a number/);
  });
});

describe("finding where a position in the bundle came from", () => {
  it("finds what Node's own source map finds on that line, and nothing in dropped code", () => {
    const trimmed = withoutSources(map, isPackage);
    const node = new SourceMap(payload(trimmed));
    const lookup = new SourceMapLookup(trimmed);
    let mapped = 0;
    let unmapped = 0;
    // Out of order, as stack frames come: a line after lines not yet decoded, then one before.
    const lines = Array.from({ length: Math.ceil(lineCount / 5) }, (_, i) => i * 5).reverse();
    for (const line of lines) {
      for (const column of [0, 2, 6, 14, 40, 120]) {
        const entry = node.findEntry(line, column) as {
          generatedLine?: number;
          originalSource?: string;
          originalLine?: number;
          originalColumn?: number;
        };
        const found = lookup.find(line, column);
        // Node's search may end on an earlier line; a frame's position never maps there.
        if (entry.generatedLine !== line || entry.originalSource === undefined) {
          expect(found).toBeUndefined();
          unmapped++;
          continue;
        }
        expect(found).toEqual({
          source: entry.originalSource,
          line: entry.originalLine,
          column: entry.originalColumn,
        });
        mapped++;
      }
    }
    expect(mapped).toBeGreaterThan(100);
    expect(unmapped).toBeGreaterThan(100);
    expect(lookup.find(lineCount + 10, 0)).toBeUndefined();
  });
});
