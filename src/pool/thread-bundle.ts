import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, stat, unlink, utimes, writeFile } from "node:fs/promises";
import { basename, dirname, extname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build, type Loader, type Plugin } from "esbuild";

/** A bundle no pool has started from for this long is deleted when the next one is built. */
const PRUNE_AFTER_MS = 30 * 86_400_000;

const THREAD_MODULE = fileURLToPath(new URL("./thread.ts", import.meta.url));

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
 * Builds the code every worker thread of a pool loads, once, in this process: the thread's
 * serve loop and the job registry, TypeScript compiled, in one ES module; packages stay imports.
 * Each thread then loads one file with Node's own loader. Through tsx, every thread compiled
 * the sources again and sent every import (packages too) through a loader thread of its own:
 * a thread with the caption registry took 2.6 s to be ready instead of 1.1 s.
 *
 * The file is named by its content's hash and kept under the node_modules nearest the
 * registry, so packages resolve as they do from the registry, processes built from the same
 * sources share it, and a thread started later (a replacement) finds it. Returns its URL.
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
  const result = await build({
    stdin: { contents: entry, resolveDir: dirname(registryPath), sourcefile: "thread-bundle-entry.js" },
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    packages: "external",
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
    plugins: [ownImportMeta],
  });
  const files = result.outputFiles;
  // The map first: a thread that finds the code finds its map.
  for (const file of [...files].sort(
    (a, b) => Number(b.path.endsWith(".map")) - Number(a.path.endsWith(".map")),
  )) {
    await writeOnce(file.path, file.contents);
  }
  await pruneOld(outdir, new Set(files.map((f) => basename(f.path))));
  const code = files.find((f) => f.path.endsWith(".mjs"));
  if (!code) throw new Error("esbuild wrote no code for the thread bundle");
  return pathToFileURL(code.path).href;
};
