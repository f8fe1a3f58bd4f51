/**
 * The files of one thread bundle, all named after its ES module `thread-<hash>.mjs`: its source
 * map, the same code as a script (bundle-script.ts) and the script's map, the module a thread
 * loads to run that script (`start`) and the copy of thread-script.js it runs it with (a
 * process that runs on after an upgrade replaced the package starts threads with its own), and
 * V8's code cache of the script, which threads write.
 */
export const bundleFiles = (modulePath: string) => {
  const stem = modulePath.replace(/\.mjs$/, "");
  return {
    module: modulePath,
    map: `${modulePath}.map`,
    script: `${stem}.script.js`,
    scriptMap: `${stem}.script.js.map`,
    start: `${stem}.start.mjs`,
    loader: `${stem}.load.mjs`,
    cache: `${stem}.script.js.cache`,
  };
};

/** The bundle's ES module, from the file its threads load (the module, or its script's start). */
export const bundleModuleOf = (loadedPath: string): string => loadedPath.replace(/\.start\.mjs$/, ".mjs");
