import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type RawSourceMap, SourceMapLookup } from "./source-map.js";

/**
 * Stack traces from a bundle's thread name their source lines, through the bundle's map, read
 * at the first stack that needs it. Node's `--enable-source-maps` read and parsed the map, and
 * measured every line of the 1.9 MB bundle, as the thread loaded it: 60-80 ms of each thread's
 * start, for the stack traces most threads never format.
 */
export const mapBundleStacks = (bundleUrl: string): void => {
  const bundlePath = fileURLToPath(bundleUrl);
  let lookup: SourceMapLookup | null | undefined;
  const lookupOf = (): SourceMapLookup | null => {
    if (lookup === undefined) {
      try {
        const map = JSON.parse(readFileSync(`${bundlePath}.map`, "utf8")) as RawSourceMap;
        const root = resolve(dirname(bundlePath), map.sourceRoot ?? "");
        lookup = new SourceMapLookup({ ...map, sources: map.sources.map((source) => resolve(root, source)) });
      } catch {
        // No map, or not one: frames name the bundle's lines, as they would with no map at all.
        lookup = null;
      }
    }
    return lookup;
  };

  const frame = (site: NodeJS.CallSite): string => {
    const text = String(site);
    const file = site.getFileName();
    // An ES module's frames name its URL; code run by other loaders may name its path.
    if (file !== bundleUrl && file !== bundlePath) return text;
    const line = site.getLineNumber();
    const column = site.getColumnNumber();
    if (line === null || column === null) return text;
    let original;
    try {
      original = lookupOf()?.find(line - 1, column - 1);
    } catch {
      // A map that does not decode: the stack is still written, this frame as the bundle's.
      lookup = null;
    }
    if (!original) return text;
    return text.replace(
      `${file}:${line}:${column}`,
      `${original.source}:${original.line + 1}:${original.column + 1}`,
    );
  };

  // As V8 writes a stack, frames mapped; what another override of this hook does, it still does
  // while it is set (a library that sets its own and puts ours back).
  Error.prepareStackTrace = (error: Error, sites: NodeJS.CallSite[]): string => {
    let header: string;
    try {
      header = Error.prototype.toString.call(error);
    } catch {
      header = "Error";
    }
    return [header, ...sites.map((site) => `    at ${frame(site)}`)].join("\n");
  };
};
