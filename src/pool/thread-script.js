// Runs a thread bundle's script (bundle-script.ts) with V8's code cache. The start module beside
// it (`thread-<hash>.start.mjs`) imports what the bundle's module imported and calls this. Plain
// JavaScript, as thread-entry.js: a bundle's thread loads no TypeScript.
//
// Node 20 keeps no code cache for ES modules. A script's is V8's own: the functions compiled so
// far, so a thread that finds one skips most of parsing and compiling the bundle as it loads and
// evaluates it (bench/README.md).
import { Buffer, isAscii } from "node:buffer";
import { readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
import { threadId } from "node:worker_threads";

/**
 * How long after loading a thread writes the cache it did not find: long enough for the code
 * its first jobs run (the claim loop, the Redis client) to be compiled, and so in the cache.
 */
const WARM_MS = 2_000;

/**
 * Written under a temporary name and renamed, so that a thread never reads half a cache. One
 * that cannot be written (a read-only directory) is left unwritten, as is every error here: a
 * thread without a cache only starts slower.
 */
const keepCache = (script, cachePath, head) => {
  const temporary = `${cachePath}.${process.pid}-${threadId}.tmp`;
  try {
    writeFileSync(temporary, Buffer.concat([head, script.createCachedData()]));
    renameSync(temporary, cachePath);
  } catch {
    try {
      unlinkSync(temporary);
    } catch {
      // Never written.
    }
  }
};

/**
 * The cache as V8 made it, if it was made from this script. V8 checks its own version and flags
 * but, of the source, only the length; so a cache begins with the digest of the script it was
 * made from (the start module knows it), and one of another script of the same name is not used.
 */
const cacheFor = (cachePath, head) => {
  let file;
  try {
    file = readFileSync(cachePath);
  } catch {
    return undefined;
  }
  return file.subarray(0, head.length).equals(head) ? file.subarray(head.length) : undefined;
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

/**
 * Compiles the script with the cache beside it, where V8 takes it (one made by another V8, or
 * with other flags, it refuses: the thread then writes its own), runs it, and returns what the
 * bundle's module exported as its default.
 * @param {URL} url of the script
 * @param {string} digest of the script's text
 * @param {Record<string, object>} namespaces the module's imports, by specifier
 * @param {ImportMeta} importMeta the start module's, beside the bundle's module
 * @param {(specifier: string, options?: ImportCallOptions) => Promise<unknown>} dynamicImport the start module's
 */
export const loadThreadScript = (url, digest, namespaces, importMeta, dynamicImport) => {
  const path = fileURLToPath(url);
  const bytes = readFileSync(path);
  // A bundle is ASCII but for what its comments keep; decoding it as UTF-8 costs 20 ms and more.
  const source = isAscii(bytes) ? bytes.toString("latin1") : bytes.toString("utf8");
  const cachePath = `${path}.cache`;
  const head = Buffer.from(`${digest}\n`);
  const cachedData = cacheFor(cachePath, head);
  const script = new vm.Script(source, { filename: path, cachedData });
  if (cachedData === undefined || script.cachedDataRejected) {
    setTimeout(() => keepCache(script, cachePath, head), WARM_MS).unref();
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
