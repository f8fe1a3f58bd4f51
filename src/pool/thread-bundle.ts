import { existsSync, readFileSync } from "node:fs";
import { isBuiltin } from "node:module";
import { mkdir, readdir, readFile, stat, unlink, utimes } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  build,
  type Loader,
  type OutputFile,
  type Plugin,
  type PluginBuild,
  version as esbuildVersion,
} from "esbuild";
import { importFromModules, reexportsOf } from "./barrel-imports.js";
import {
  BuildInputs,
  builtAlready,
  digest,
  fileSystemNow,
  replaceFile,
  writeRecord,
} from "./bundle-record.js";
import { bundleFiles, bundleModuleOf } from "./bundle-files.js";
import { scriptOfBundle, startModule } from "./bundle-script.js";
import { composeMaps, type RawSourceMap, withoutSources } from "./source-map.js";

/** A bundle no pool has started from for this long is deleted when the next one is built. */
const PRUNE_AFTER_MS = 30 * 86_400_000;

const THREAD_MODULE = fileURLToPath(new URL("./thread.ts", import.meta.url));
/**
 * A bundled CommonJS package (ioredis) requires Node's builtins: an ES module has no `require`
 * of its own.
 */
const BANNER =
  'import { createRequire as __threadRequire } from "node:module"; const require = __threadRequire(import.meta.url);';
/** What a bundle's start module runs its script with (plain JavaScript, as thread-entry.js). */
const SCRIPT_LOADER = readFileSync(fileURLToPath(new URL("./thread-script.js", import.meta.url)));
/** The name esbuild gives the generated entry (it is no file). */
const ENTRY_NAME = "thread-bundle-entry.js";

/**
 * Packages the thread's own code imports, so every thread loads them whatever its registry:
 * bundled, with the registry's imports of them and everything they import in turn (`ioredis`
 * imports `denque`). A thread loads one file where it loaded hundreds of modules (`effect` took
 * a fresh thread 0.5-0.67 s to import, `fast-check` alone 0.14-0.18 s; the bundle of what is
 * used loads in 0.14-0.16 s). Every other package stays an import, resolved from the registry.
 *
 * The Redis client and OpenTelemetry's API are imported only by the code that claims in the
 * thread (RT_CLAIM_IN=threads), which the thread imports when it hosts a group: bundled, they
 * are evaluated then, not as the bundle loads. Left as imports, every thread loaded them at
 * start, claims or not (its first job 0.3 s later).
 */
const BUNDLED_PACKAGES: ReadonlySet<string> = new Set(["effect", "ioredis", "@opentelemetry/api"]);

const packageOf = (specifier: string) =>
  specifier
    .split("/")
    .slice(0, specifier.startsWith("@") ? 2 : 1)
    .join("/");

const NODE_MODULES = "/node_modules/";

/** The directory of the installed package a file is in, if it is in one. */
const packageDirOf = (path: string): string | undefined => {
  const at = path.lastIndexOf(NODE_MODULES);
  if (at < 0) return undefined;
  const start = at + NODE_MODULES.length;
  return path.slice(0, start) + packageOf(path.slice(start));
};

/** The packages one build bundles, by their directories. */
class BundledPackages {
  private readonly dirs = new Set<string>();

  add(dir: string) {
    this.dirs.add(dir);
  }

  holds(path: string): boolean {
    const dir = packageDirOf(path);
    return dir !== undefined && this.dirs.has(dir);
  }
}

/** Marks the plugin's own call to esbuild's resolver, which would otherwise come back to it. */
const RESOLVING = Symbol("resolving");

/** Whether Node would find `name` as a package from `dir`: a `node_modules/<name>` above it. */
const installedFrom = (dir: string, name: string): boolean => {
  for (let at = dir; ; at = dirname(at)) {
    if (existsSync(join(at, "node_modules", name))) return true;
    if (dirname(at) === at) return false;
  }
};

/**
 * Which imports stay imports: those of packages, by name, as the sources import them, but the
 * bundled ones and what they import. A tsconfig `paths` alias or a `#` import that names a file
 * of the application is no package: bundled.
 */
const otherPackagesExternal = (bundled: BundledPackages): Plugin => ({
  name: "other-packages-external",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, async ({ path, importer, resolveDir, kind, pluginData }) => {
      if (pluginData === RESOLVING) return undefined;
      if (isBuiltin(path)) return { path, external: true };
      const resolved = await build.resolve(path, { importer, resolveDir, kind, pluginData: RESOLVING });
      // Not found now (an optional package): an import, as the sources have it, that fails
      // where it is run, if it is.
      if (resolved.errors.length > 0) return { path, external: true };
      if (resolved.external) return { path: resolved.path, external: true };
      if (path.startsWith("#") || !installedFrom(resolveDir, packageOf(path))) return undefined;
      const dir = packageDirOf(resolved.path);
      if (dir === undefined || !(BUNDLED_PACKAGES.has(packageOf(path)) || bundled.holds(importer))) {
        return { path, external: true };
      }
      bundled.add(dir);
      return undefined;
    });
  },
});

const LOADERS: Record<string, Loader> = {
  ".ts": "ts",
  ".mts": "ts",
  ".cts": "ts",
  ".tsx": "tsx",
  ".js": "js",
  ".mjs": "js",
  ".cjs": "js",
  ".jsx": "jsx",
};

/**
 * The package whose index a bundle's sources do without (`importFromModules`). The registry is
 * imported lazily, so esbuild wraps it, and everything it imports, in functions run at first
 * use; `effect`'s index, wrapped, runs every one of the 175 modules it names, whichever are used
 * (a thread spent 20 of the 45 ms it took to load its bundle there, and `fast-check` came
 * with them). Imported from their own modules, the bundle holds and runs those used.
 * `effect` declares no side effects: leaving its others unrun changes nothing.
 */
const INDEXED_PACKAGE = "effect";
const IMPORTS_INDEXED = new RegExp(`from\\s*["']${INDEXED_PACKAGE}["']`);

type Placement = ReadonlyMap<string, { readonly specifier: string; readonly name: string }>;

/**
 * Where each name the package's index (as it resolves from a directory) exports is imported
 * from instead: `effect/Schema` for `Schema`, where that resolves to the very file the index
 * re-exports. The index is read as an input of the build, so a new version of it builds again.
 */
const placementsOf = (build: PluginBuild, inputs: BuildInputs) => {
  const byIndex = new Map<string, Promise<Placement>>();
  const resolveFrom = (specifier: string, resolveDir: string) =>
    build.resolve(specifier, { resolveDir, kind: "import-statement", pluginData: RESOLVING });
  const place = async (index: string, resolveDir: string): Promise<Placement> => {
    const reexports = reexportsOf(await inputs.load(index));
    if (!reexports) return new Map();
    const placed = await Promise.all(
      [...reexports].map(async ([name, { from, name: there }]) => {
        const specifier = `${INDEXED_PACKAGE}/${from.replace(/^\.\//, "").replace(/\.js$/, "")}`;
        const module = await resolveFrom(specifier, resolveDir);
        const same = module.errors.length === 0 && module.path === resolve(dirname(index), from);
        return same ? ([name, { specifier, name: there }] as const) : undefined;
      }),
    );
    return new Map(placed.filter((entry) => entry !== undefined));
  };
  return async (resolveDir: string): Promise<Placement> => {
    const index = await resolveFrom(INDEXED_PACKAGE, resolveDir);
    if (index.errors.length > 0 || index.external || index.path === "") return new Map();
    let placement = byIndex.get(index.path);
    if (!placement) {
      placement = place(index.path, resolveDir);
      byIndex.set(index.path, placement);
    }
    return placement;
  };
};

/**
 * Each source as the bundle takes it. In a bundle every module shares the bundle's own
 * `import.meta`; code that finds files next to itself (a `createRequire`, a directory of
 * scripts) must still see its source file's. And its imports of `effect` name the modules they
 * use (`INDEXED_PACKAGE`).
 */
const asBundled = (inputs: BuildInputs): Plugin => ({
  name: "as-bundled",
  setup(build) {
    const placements = placementsOf(build, inputs);
    build.onLoad({ filter: /\.[cm]?[jt]sx?$/ }, async ({ path }) => {
      const source = await inputs.load(path);
      const meta = {
        url: pathToFileURL(path).href,
        filename: path,
        dirname: dirname(path),
      } as Record<string, string>;
      let contents = source.replace(/\bimport\.meta\.(url|filename|dirname)\b/g, (_, name: string) =>
        JSON.stringify(meta[name]),
      );
      if (IMPORTS_INDEXED.test(contents)) {
        const placement = await placements(dirname(path));
        contents = importFromModules(contents, INDEXED_PACKAGE, (name) => placement.get(name));
      }
      return { contents, loader: LOADERS[extname(path)] ?? "js" };
    });
  },
});

/** Where packages resolve from the registry: a bundle there imports them as its sources did. */
const cacheDirFor = (registryPath: string): string => {
  for (let dir = dirname(registryPath); ; dir = dirname(dir)) {
    if (existsSync(join(dir, "node_modules"))) return join(dir, "node_modules", ".cache", "ratatoskr");
    if (dirname(dir) === dir) {
      throw new Error(`no node_modules directory above ${registryPath} to keep the thread bundle in`);
    }
  }
};

/**
 * Written whole (`replaceFile`): a thread never reads half a file. One there already with the
 * same contents (a bundle's name is its code's hash) is only marked as used, and where the
 * directory is read-only to this process (a bundle made at install, `ratatoskr threads
 * bundle`), not even that. A map of the same code made another way is replaced.
 */
const writeIfChanged = async (path: string, contents: Uint8Array) => {
  const present = await readFile(path).catch(() => undefined);
  if (present?.equals(contents)) {
    const now = new Date();
    await utimes(path, now, now).catch(() => {});
    return;
  }
  await mkdir(dirname(path), { recursive: true });
  await replaceFile(path, contents);
};

const pruneOld = async (dir: string, keep: ReadonlySet<string>) => {
  const cutoff = Date.now() - PRUNE_AFTER_MS;
  for (const name of await readdir(dir).catch(() => [])) {
    if (!name.startsWith("thread-") || keep.has(name)) continue;
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (info && info.mtimeMs < cutoff) await unlink(path).catch(() => {});
  }
};

/**
 * The bundle's map without the bundled packages' code, most of it: a thread with source maps on
 * parses the whole map as it loads the bundle (the map of a bundle with `effect` took a thread
 * 80-100 ms). A stack frame in a package's code names the bundle's line instead.
 */
const mapOfOwnCode = (file: OutputFile, outdir: string, bundled: BundledPackages): RawSourceMap =>
  withoutSources(JSON.parse(file.text) as RawSourceMap, (source) => bundled.holds(resolve(outdir, source)));

// The text of the modules that build bundles is part of every record's name: a change to how
// bundles are built makes every bundle built before it stale.
const BUILDER = [
  ...[
    "./thread-bundle",
    "./bundle-record",
    "./source-map",
    "./bundle-script",
    "./bundle-files",
    "./barrel-imports",
  ].map((module) =>
    readFileSync(fileURLToPath(new URL(`${module}${extname(import.meta.url)}`, import.meta.url)), "utf8"),
  ),
  SCRIPT_LOADER.toString("utf8"),
].join("\0");

const recordName = (entry: string) =>
  `thread-build-${digest([BUILDER, esbuildVersion, entry].join("\0")).slice(0, 16)}.json`;

/**
 * The bundle as a script as well, where it can be one (bundle-script.ts), and the module that
 * runs it, written after it: the path threads load, that module or else the bundle's own.
 */
const writeScript = async (code: OutputFile, map: RawSourceMap): Promise<string> => {
  const made = await scriptOfBundle(code.text, BANNER);
  if (!made) return code.path;
  const files = bundleFiles(code.path);
  await writeIfChanged(files.scriptMap, Buffer.from(JSON.stringify(composeMaps(made.map, map))));
  await writeIfChanged(files.script, Buffer.from(made.script));
  await writeIfChanged(files.loader, SCRIPT_LOADER);
  await writeIfChanged(
    files.start,
    Buffer.from(startModule(made, basename(files.script), `./${basename(files.loader)}`)),
  );
  return files.start;
};

/** A start module runs the script and the loader beside it: without them, a bundle is built again. */
const wholeBundle = (loaded: string): boolean => {
  const files = bundleFiles(bundleModuleOf(loaded));
  return loaded === files.module || (existsSync(files.script) && existsSync(files.loader));
};

/** Marks files as used (pruning goes by age); where the directory is read-only, it cannot. */
const touch = async (paths: readonly string[]) => {
  const now = new Date();
  await Promise.all(paths.map((path) => utimes(path, now, now).catch(() => {})));
};

/**
 * Builds the code every worker thread of a pool loads, once, in this process: the thread's
 * serve loop and the job registry, TypeScript compiled, with the packages the thread code
 * itself imports and what they import, in one ES module; other packages stay imports. Each
 * thread then loads one file with Node's own loader. Through tsx, every thread compiled the
 * sources again and sent every import (packages too) through a loader thread of its own: a
 * thread with the caption registry took 2.6 s to be ready instead of 1.1 s.
 *
 * The file is named by its content's hash and kept under the node_modules nearest the
 * registry, so packages resolve as they do from the registry, processes built from the same
 * sources share it, and a thread started later (a replacement) finds it. A record beside it
 * lets the next start use it without building while its sources are unchanged. Returns its URL.
 */
export const bundleThreadCode = async (registryUrl: string, options: { cacheDir?: string } = {}) => {
  if (!registryUrl.startsWith("file:")) throw new Error(`the job registry ${registryUrl} is not a file`);
  const registryPath = fileURLToPath(registryUrl);
  if (!existsSync(registryPath)) throw new Error(`the job registry ${registryPath} does not exist`);
  const outdir = options.cacheDir ?? cacheDirFor(registryPath);
  // The registry is imported lazily (esbuild defers its evaluation): if it throws as it loads,
  // the jobs fail with its error, as through tsx, instead of every new thread dying at start.
  const entry = [
    `import { preloadRegistry, serve } from ${JSON.stringify(THREAD_MODULE)};`,
    `preloadRegistry(${JSON.stringify(registryUrl)}, () => import(${JSON.stringify(registryPath)}));`,
    "export default serve;",
  ].join("\n");
  const recordPath = join(outdir, recordName(entry));
  const built = await builtAlready(recordPath);
  if (built && wholeBundle(built)) {
    await touch([...Object.values(bundleFiles(bundleModuleOf(built))), recordPath]);
    return pathToFileURL(built).href;
  }
  const inputs = new BuildInputs(await fileSystemNow(outdir));
  const bundled = new BundledPackages();
  // The metafile names inputs relative to it.
  const workingDir = process.cwd();
  const result = await build({
    stdin: { contents: entry, resolveDir: dirname(registryPath), sourcefile: ENTRY_NAME },
    absWorkingDir: workingDir,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    keepNames: true,
    banner: { js: BANNER },
    // Stack traces from a job name its source lines (bundle-stacks.ts maps them).
    sourcemap: "linked",
    sourcesContent: false,
    outdir,
    entryNames: "thread-[hash]",
    // .mjs: under node_modules no package.json says "type": "module".
    outExtension: { ".js": ".mjs" },
    write: false,
    logLevel: "silent",
    // Node's conditions only: a bundled package's files must be those Node would load (esbuild
    // adds `module` by default).
    conditions: [],
    metafile: true,
    plugins: [otherPackagesExternal(bundled), asBundled(inputs)],
  });
  const code = result.outputFiles.find((f) => f.path.endsWith(".mjs"));
  const mapFile = result.outputFiles.find((f) => f.path.endsWith(".map"));
  if (!code || !mapFile) throw new Error("esbuild wrote no code for the thread bundle");
  const map = mapOfOwnCode(mapFile, outdir, bundled);
  // The map first: a thread that finds the code finds its map.
  await writeIfChanged(mapFile.path, Buffer.from(JSON.stringify(map)));
  await writeIfChanged(code.path, code.contents);
  const loaded = await writeScript(code, map);
  // esbuild names the entry as if it were a file in its resolve directory; its text is in the
  // record's name.
  const entryPath = join(dirname(registryPath), ENTRY_NAME);
  const files = Object.keys(result.metafile.inputs)
    .map((input) => resolve(workingDir, input))
    .filter((path) => path !== entryPath);
  const recorded = await inputs.all(files).catch(() => undefined);
  if (recorded) await writeRecord(recordPath, { bundle: basename(loaded), inputs: recorded });
  const kept = Object.values(bundleFiles(code.path)).map((path) => basename(path));
  await pruneOld(outdir, new Set([...kept, basename(recordPath)]));
  return pathToFileURL(loaded).href;
};
