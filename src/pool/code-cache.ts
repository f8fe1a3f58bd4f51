import { existsSync, rmSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { bundleFiles, bundleModuleOf } from "./bundle-files.js";
import { JobPool } from "./pool.js";
import { cacheTaken } from "./thread-script.js";

/**
 * Has one worker thread load the bundle, so that it writes V8's code cache of the bundle's script
 * (thread-script.js writes it once the thread is warm), for an install the service's threads may
 * not write to (`ratatoskr threads bundle`). A cache already there is made again: the V8 that
 * runs this is the one the service will run. Returns the cache's path; undefined where the
 * bundle runs as a module (it has no script) or no thread wrote one within `waitMs`.
 */
export const writeCodeCache = async (
  registry: string,
  bundle: string,
  options: { waitMs?: number } = {},
): Promise<string | undefined> => {
  const loaded = fileURLToPath(bundle);
  const files = bundleFiles(bundleModuleOf(loaded));
  if (loaded !== files.start) return undefined;
  rmSync(files.cache, { force: true });
  // V8 takes a cache made with the same node flags (this process's, which the thread gets); a
  // worker's heap cap is not among them.
  const pool = new JobPool({ registry, bundle, threads: 1 });
  try {
    const deadline = Date.now() + (options.waitMs ?? 20_000);
    while (!existsSync(files.cache) && Date.now() < deadline) await sleep(100);
    return existsSync(files.cache) ? files.cache : undefined;
  } finally {
    await pool.close();
  }
};

/**
 * Whether threads of this process would load the bundle with its code cache: false where the
 * bundle runs as a module (it has none), the cache is missing or damaged, or this process's V8
 * refuses it (made by another Node or under other node flags), as `writeCodeCache` would mend.
 */
export const codeCacheTaken = (bundle: string): boolean => {
  const loaded = fileURLToPath(bundle);
  const files = bundleFiles(bundleModuleOf(loaded));
  return loaded === files.start && existsSync(files.cache) && cacheTaken(files.script);
};
