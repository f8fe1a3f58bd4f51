import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { isBuiltin } from "node:module";
import { mkdir, readdir, readFile, rename, stat, unlink, utimes, writeFile } from "node:fs/promises";
import { basename, dirname, extname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build, type Loader, type OutputFile, type Plugin, version as esbuildVersion } from "esbuild";
import { type RawSourceMap, withoutSources } from "./source-map.js";

/** A bundle no pool has started from for this long is deleted when the next one is built. */
const PRUNE_AFTER_MS = 30 * 86_400_000;

const THREAD_MODULE = fileURLToPath(new URL("./thread.ts", import.meta.url));
/** The name esbuild gives the generated entry (it is no file). */
const ENTRY_NAME = "thread-bundle-entry.js";

/**
 * Packages the thread's own code imports, so every thread loads them whatever its registry:
 * bundled, with the registry's imports of them. A thread loads one file where it loaded
 * hundreds of modules (`effect` took a fresh thread 0.5-0.67 s to import; the bundle of what is
 * used loads in 0.25 s). Every other package stays an import, resolved from the registry.
 */
const BUNDLED_PACKAGES: ReadonlySet<string> = new Set(["effect"]);

const inBundledPackage = (path: string) =>
  [...BUNDLED_PACKAGES].some((name) => path.includes(`/node_modules/${name}/`));

const packageOf = (specifier: string) =>
  specifier
    .split("/")
    .slice(0, specifier.startsWith("@") ? 2 : 1)
    .join("/");

/** Marks the plugin's own call to esbuild's resolver, which would otherwise come back to it. */
const RESOLVING = Symbol("resolving");

const otherPackagesExternal: Plugin = {
  name: "other-packages-external",
  setup(build) {
    // Bare specifiers only: packages and Node's builtins.
    build.onResolve({ filter: /^[^./]/ }, async ({ path, importer, resolveDir, kind, pluginData }) => {
      if (isAbsolute(path) || BUNDLED_PACKAGES.has(packageOf(path)) || pluginData === RESOLVING) {
        return undefined;
      }
      if (isBuiltin(path) || !inBundledPackage(importer)) return { path, external: true };
      // A bundled package's own dependency resolves from the package, as it did unbundled, not
      // from the bundle's directory, where it may not be found (a pnpm or nested install).
      const resolved = await build.resolve(path, { importer, resolveDir, kind, pluginData: RESOLVING });
      if (resolved.errors.length > 0) return { errors: resolved.errors };
      return { path: pathToFileURL(resolved.path).href, external: true };
    });
  },
};

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
 * In a bundle every module shares the bundle's own `import.meta`; code that finds files next to
 * itself (a `createRequire`, a directory of scripts) must still see its source file's.
 */
const ownImportMeta: Plugin = {
  name: "own-import-meta",
  setup(build) {
    build.onLoad({ filter: /\.[cm]?[jt]sx?$/ }, async ({ path }) => {
      const source = await readFile(path, "utf8");
      const meta = {
        url: pathToFileURL(path).href,
        filename: path,
        dirname: dirname(path),
      } as Record<string, string>;
      const contents = source.replace(/\bimport\.meta\.(url|filename|dirname)\b/g, (_, name: string) =>
        JSON.stringify(meta[name]),
      );
      return { contents, loader: LOADERS[extname(path)] ?? "js" };
    });
  },
};

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
 * Written under a temporary name and renamed: a thread never reads half a file. One there
 * already (the same hash: the same code) is only marked as used, and where the directory is
 * read-only to this process (a bundle made at install, `ratatoskr threads bundle`), not even that.
 */
const writeOnce = async (path: string, contents: Uint8Array) => {
  if (existsSync(path)) {
    const now = new Date();
    await utimes(path, now, now).catch(() => {});
    return;
  }
  await mkdir(dirname(path), { recursive: true });
  const temporary = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  await writeFile(temporary, contents);
  await rename(temporary, path);
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
const mapOfOwnCode = (file: OutputFile, outdir: string): Uint8Array => {
  const map = JSON.parse(file.text) as RawSourceMap;
  const trimmed = withoutSources(map, (source) => inBundledPackage(resolve(outdir, source)));
  return Buffer.from(JSON.stringify(trimmed));
};

/**
 * What a bundle was made from: each input file (absolute path) with its content's digest. Its
 * name says which registry, thread code and builder it is for; a start whose inputs all still
 * read the same loads the bundle without building it again (a build that bundles a package
 * takes 0.35-0.97 s, a check 13-59 ms).
 */
interface BuildRecord {
  readonly bundle: string;
  readonly inputs: Readonly<Record<string, string>>;
}

const digest = (contents: string | Uint8Array) => createHash("sha1").update(contents).digest("hex");

// This module's own text is part of every record's name: a change to how bundles are built
// makes every bundle built before it stale.
const BUILDER = readFileSync(fileURLToPath(import.meta.url), "utf8");

const recordName = (entry: string) =>
  `thread-build-${digest([BUILDER, esbuildVersion, entry].join("\0")).slice(0, 16)}.json`;

/** The bundle of a record whose every input reads as it did, or nothing. */
const builtAlready = async (outdir: string, recordPath: string): Promise<string | undefined> => {
  let record: BuildRecord;
  try {
    record = JSON.parse(await readFile(recordPath, "utf8")) as BuildRecord;
  } catch {
    return undefined;
  }
  const bundle = join(outdir, record.bundle);
  if (!existsSync(bundle)) return undefined;
  const contents = await Promise.all(
    Object.keys(record.inputs).map((path) => readFile(path).catch(() => undefined)),
  );
  const unchanged = Object.values(record.inputs).every(
    (hash, i) => contents[i] !== undefined && digest(contents[i]) === hash,
  );
  return unchanged ? bundle : undefined;
};

/** Marks files as used (pruning goes by age); where the directory is read-only, it cannot. */
const touch = async (paths: readonly string[]) => {
  const now = new Date();
  await Promise.all(paths.map((path) => utimes(path, now, now).catch(() => {})));
};

/**
 * Builds the code every worker thread of a pool loads, once, in this process: the thread's
 * serve loop and the job registry, TypeScript compiled, with the packages the thread code
 * itself imports, in one ES module; other packages stay imports. Each thread then loads one
 * file with Node's own loader. Through tsx, every thread compiled the sources again and sent
 * every import (packages too) through a loader thread of its own: a thread with the caption
 * registry took 2.6 s to be ready instead of 1.1 s.
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
  const built = await builtAlready(outdir, recordPath);
  if (built) {
    await touch([built, `${built}.map`, recordPath]);
    return pathToFileURL(built).href;
  }
  const result = await build({
    stdin: { contents: entry, resolveDir: dirname(registryPath), sourcefile: ENTRY_NAME },
    // The metafile names inputs relative to it.
    absWorkingDir: process.cwd(),
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    keepNames: true,
    // Stack traces from a job name its source lines (the pool turns source maps on).
    sourcemap: "linked",
    sourcesContent: false,
    outdir,
    entryNames: "thread-[hash]",
    // .mjs: under node_modules no package.json says "type": "module".
    outExtension: { ".js": ".mjs" },
    write: false,
    logLevel: "silent",
    metafile: true,
    plugins: [otherPackagesExternal, ownImportMeta],
  });
  const files = result.outputFiles;
  // The map first: a thread that finds the code finds its map.
  for (const file of [...files].sort(
    (a, b) => Number(b.path.endsWith(".map")) - Number(a.path.endsWith(".map")),
  )) {
    await writeOnce(file.path, file.path.endsWith(".map") ? mapOfOwnCode(file, outdir) : file.contents);
  }
  const code = files.find((f) => f.path.endsWith(".mjs"));
  if (!code) throw new Error("esbuild wrote no code for the thread bundle");
  const entryPath = join(dirname(registryPath), ENTRY_NAME);
  await writeRecord(recordPath, code.path, Object.keys(result.metafile.inputs), entryPath);
  await pruneOld(outdir, new Set([...files.map((f) => basename(f.path)), basename(recordPath)]));
  return pathToFileURL(code.path).href;
};

/**
 * Every input but the entry is a file. esbuild names the entry as if it were a file in its
 * resolve directory; its text is in the record's name.
 */
const writeRecord = async (recordPath: string, bundle: string, inputs: string[], entryPath: string) => {
  const files = inputs.map((input) => resolve(input)).filter((path) => path !== entryPath);
  const contents = await Promise.all(files.map((file) => readFile(file)));
  const record: BuildRecord = {
    bundle: basename(bundle),
    inputs: Object.fromEntries(files.map((file, i) => [file, digest(contents[i]!)])),
  };
  // Replaced whole, as the bundle is; where the directory is read-only (a bundle made at
  // install) the next start builds again, as it did before records.
  const temporary = `${recordPath}.${randomBytes(6).toString("hex")}.tmp`;
  await writeFile(temporary, JSON.stringify(record))
    .then(() => rename(temporary, recordPath))
    .catch(() => unlink(temporary).catch(() => {}));
};
