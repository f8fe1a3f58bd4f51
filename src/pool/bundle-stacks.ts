import { readFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { bundleFiles, bundleModuleOf } from "./bundle-files.js";
import { type RawSourceMap, SourceMapLookup } from "./source-map.js";

/**
 * Node marks its own errors with a symbol of this description; their stacks begin
 * `RangeError [ERR_OUT_OF_RANGE]: ...`, as Node's own formatter writes them.
 */
const isNodeError = (error: object): boolean => {
  for (
    let proto: object | null = error;
    proto !== null;
    proto = Object.getPrototypeOf(proto) as object | null
  )
    if (Object.getOwnPropertySymbols(proto).some((symbol) => symbol.description === "kIsNodeError"))
      return true;
  return false;
};

/** The stack's first line, as V8 (or Node, for its own errors) writes it. */
const headerOf = (error: unknown): string => {
  try {
    const text = Error.prototype.toString.call(error);
    if (typeof error !== "object" || error === null || !isNodeError(error)) return text;
    const { name, code, message } = error as { name?: unknown; code?: unknown; message?: unknown };
    return typeof code === "string" ? `${String(name)} [${code}]: ${String(message)}` : text;
  } catch {
    return "Error";
  }
};

/** A map's sources, which esbuild lists as URLs relative to the map (percent-encoded), as paths. */
const sourcePaths = (map: RawSourceMap, mapUrl: string): string[] => {
  const root = new URL(map.sourceRoot ? map.sourceRoot.replace(/\/?$/, "/") : "./", mapUrl);
  return map.sources.map((source) => {
    const url = new URL(source, root);
    return url.protocol === "file:" ? fileURLToPath(url) : url.href;
  });
};

/**
 * A frame whose position in the bundle maps to a source: what it is asked, answered for the
 * source; anything else asked of the frame itself (V8's call sites hold their data in internal
 * slots, so the frame cannot be a prototype).
 */
const frameAt = (site: NodeJS.CallSite, text: string, source: string, line: number, column: number) =>
  new Proxy(site, {
    get(target, property) {
      switch (property) {
        case "toString":
          return () => text;
        case "getFileName":
        case "getScriptNameOrSourceURL":
          return () => source;
        case "getLineNumber":
          return () => line;
        case "getColumnNumber":
          return () => column;
        default: {
          const value: unknown = Reflect.get(target, property, target);
          return typeof value === "function"
            ? (value as (...args: unknown[]) => unknown).bind(target)
            : value;
        }
      }
    },
  });

/**
 * Stack traces from a bundle's thread name their source lines, through the bundle's map, read
 * at the first stack that needs it. Node's `--enable-source-maps` read and parsed the map, and
 * measured every line of the 1.9 MB bundle, as the thread loaded it: 60-80 ms of each thread's
 * start, for the stack traces most threads never format. The frames, mapped, go on to the
 * formatter there was (Node's own, which writes its errors' codes, or a preload's); where the
 * process turned Node's source maps on itself (the thread inherits them), Node maps a module's
 * frames, and this a script's (bundle-script.ts), which Node does not.
 */
export const mapBundleStacks = (bundleUrl: string): void => {
  const loaded = fileURLToPath(bundleUrl);
  const files = bundleFiles(bundleModuleOf(loaded));
  // Node maps an ES module's frames itself, where its source maps are on; not a script's.
  if (process.sourceMapsEnabled && loaded === files.module) return;
  // The module's frames name its URL; the script's (bundle-script.ts), its path. Each has a map.
  const mapOf = new Map([
    [pathToFileURL(files.module).href, files.map],
    [files.module, files.map],
    [files.script, files.scriptMap],
  ]);
  const lookups = new Map<string, SourceMapLookup | null>();
  const lookupOf = (mapPath: string): SourceMapLookup | null => {
    let lookup = lookups.get(mapPath);
    if (lookup === undefined) {
      try {
        const map = JSON.parse(readFileSync(mapPath, "utf8")) as RawSourceMap;
        lookup = new SourceMapLookup({ ...map, sources: sourcePaths(map, pathToFileURL(mapPath).href) });
      } catch {
        // No map, or not one: frames name the bundle's lines, as they would with no map at all.
        lookup = null;
      }
      lookups.set(mapPath, lookup);
    }
    return lookup;
  };

  const mapped = (site: NodeJS.CallSite): NodeJS.CallSite => {
    const file = site.getFileName();
    const mapPath = file === null || file === undefined ? undefined : mapOf.get(file);
    if (mapPath === undefined) return site;
    const line = site.getLineNumber();
    const column = site.getColumnNumber();
    if (line === null || column === null) return site;
    const original = lookupOf(mapPath)?.find(line - 1, column - 1);
    if (!original) return site;
    const [sourceLine, sourceColumn] = [original.line + 1, original.column + 1];
    // A function, not a string: `$&` and the like in a path are not patterns.
    const text = String(site).replace(
      `${file}:${line}:${column}`,
      () => `${original.source}:${sourceLine}:${sourceColumn}`,
    );
    return frameAt(site, text, original.source, sourceLine, sourceColumn);
  };

  const safely = (site: NodeJS.CallSite): NodeJS.CallSite => {
    try {
      return mapped(site);
    } catch {
      return site;
    }
  };

  const before = Error.prepareStackTrace;
  // Never throws: a stack that cannot be mapped is written as it would have been.
  Error.prepareStackTrace = (error: Error, sites: NodeJS.CallSite[]): unknown => {
    const frames = sites.map(safely);
    if (before) {
      try {
        return before(error, frames);
      } catch {
        // Written here instead, as V8 would.
      }
    }
    return [headerOf(error), ...frames.map((frame) => `    at ${describe(frame)}`)].join("\n");
  };
};

const describe = (frame: NodeJS.CallSite): string => {
  try {
    return String(frame);
  } catch {
    return "<unknown>";
  }
};
