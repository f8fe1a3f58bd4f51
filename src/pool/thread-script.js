// Runs a thread bundle's script (bundle-script.ts) with V8's code cache. The start module beside
// it (`thread-<hash>.start.mjs`) imports what the bundle's module imported and calls this. Plain
// JavaScript, as thread-entry.js: a bundle's thread loads no TypeScript.
//
// Node 20 keeps no code cache for ES modules. A script's is V8's own: the functions compiled so
// far, so a thread that finds one skips most of parsing and compiling the bundle as it loads and
// evaluates it (bench/PERFORMANCE.md).
import { Buffer, isAscii } from "node:buffer";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

/**
 * How long after loading a thread writes the cache it did not find: long enough for the code
 * its first jobs run to be compiled, and so in the cache.
 */
const WARM_MS = 2_000;

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

/**
 * A cache file: a line with the digest of the script it was made from and the digest of V8's
 * data, then that data. V8 checks its own version and flags but, of the source, only its length,
 * and not its data's integrity: data of another script of the same length would run that
 * script's code, and damaged data (a crash before the disk had it all) crashes the process, at
 * every start. So a cache is used only where both digests hold (2-3 ms a thread, both read).
 */
const cacheFor = (cachePath, scriptDigest) => {
  let file;
  try {
    file = readFileSync(cachePath);
  } catch {
    return { found: false };
  }
  const end = file.indexOf(10);
  const [madeFrom, ofData] = file.subarray(0, Math.max(end, 0)).toString("latin1").split(" ");
  const data = file.subarray(end + 1);
  return {
    found: true,
    data: end > 0 && madeFrom === scriptDigest && ofData === sha256(data) ? data : undefined,
  };
};

/**
 * Written under a name of its own, on the disk, then renamed: a thread never reads half a cache
 * or one the disk lost part of. One that cannot be written (a read-only install) only means
 * that every thread compiles the script as it loads it: said once per thread, since
 * `ratatoskr threads bundle` writes it at install.
 */
const keepCache = (script, cachePath, scriptDigest, refused) => {
  const temporary = `${cachePath}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    const data = script.createCachedData();
    const file = Buffer.concat([Buffer.from(`${scriptDigest} ${sha256(data)}\n`), data]);
    const fd = openSync(temporary, "w");
    try {
      writeFileSync(fd, file);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, cachePath);
  } catch (error) {
    try {
      unlinkSync(temporary);
    } catch {
      // Never written.
    }
    process.emitWarning(
      `the worker threads' code cache ${cachePath} ${refused ? "is not usable (made by another Node, with other node flags, or for other code)" : "is missing"} and cannot be written here (${error?.code ?? error}): each thread compiles the code as it loads it. \`ratatoskr threads bundle\`, run with the service's Node and node flags, writes it.`,
      { code: "RATATOSKR_CODE_CACHE" },
    );
  }
};

/**
 * What the script's `require` answers for the module's import statements: the namespace the
 * start module imported, marked so that esbuild's interop reads its `default` as the default
 * export (not the namespace), every export read through to it, so live.
 */
const importedBy = (namespaces) => {
  const marked = new Map();
  return (specifier) => {
    let found = marked.get(specifier);
    if (found === undefined) {
      const namespace = Object.hasOwn(namespaces, specifier) ? namespaces[specifier] : undefined;
      if (namespace === undefined) {
        throw new Error(
          `the thread bundle's script requires ${specifier}, which its start module did not import`,
        );
      }
      found = new Proxy(namespace, {
        get: (target, key) => (key === "__esModule" ? true : Reflect.get(target, key)),
      });
      marked.set(specifier, found);
    }
    return found;
  };
};

/** A bundle is ASCII but for what its comments keep; decoding it as UTF-8 costs 20 ms and more. */
const sourceOf = (bytes) => (isAscii(bytes) ? bytes.toString("latin1") : bytes.toString("utf8"));

/**
 * Whether a thread of this process would run the script at `path` with the cache beside it: one
 * is there, both its digests hold, and this process's V8 takes it (V8's flags are the process's,
 * its threads' too). A cache made under other node flags (`--expose-gc`, say) is there but
 * refused, and a thread would compile the script and write the cache again only once warm.
 * @param {string} path of the script
 */
export const cacheTaken = (path) => {
  const bytes = readFileSync(path);
  const cache = cacheFor(`${path}.cache`, sha256(bytes));
  if (cache.data === undefined) return false;
  return !new vm.Script(sourceOf(bytes), { filename: path, cachedData: cache.data }).cachedDataRejected;
};

/**
 * Compiles the script with the cache beside it, where V8 takes it (one made by another V8, or
 * with other node flags, it refuses: the thread then writes its own), runs it, and returns what
 * the bundle's module exported as its default.
 * @param {URL} url of the script
 * @param {Record<string, object>} namespaces the module's imports, by specifier
 * @param {ImportMeta} importMeta the start module's, beside the bundle's module
 * @param {(specifier: string, options?: ImportCallOptions) => Promise<unknown>} dynamicImport the start module's
 */
export const loadThreadScript = (url, namespaces, importMeta, dynamicImport) => {
  const path = fileURLToPath(url);
  const bytes = readFileSync(path);
  const cachePath = `${path}.cache`;
  const scriptDigest = sha256(bytes);
  const cache = cacheFor(cachePath, scriptDigest);
  const script = new vm.Script(sourceOf(bytes), { filename: path, cachedData: cache.data });
  if (cache.data === undefined || script.cachedDataRejected) {
    const refused = cache.found;
    setTimeout(() => keepCache(script, cachePath, scriptDigest, refused), WARM_MS).unref();
  }
  const module = { exports: {} };
  script.runInThisContext()(
    importedBy(namespaces),
    module,
    module.exports,
    createRequire(importMeta.url),
    importMeta,
    dynamicImport,
  );
  return module.exports.default;
};
