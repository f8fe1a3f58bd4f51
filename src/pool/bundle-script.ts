import { Script } from "node:vm";
import { transform } from "esbuild";
import { init, parse } from "es-module-lexer";
import type { RawSourceMap } from "./source-map.js";

/** What a bundle's ES module becomes to run with V8's code cache: a script and its imports. */
export interface BundleScript {
  /** `(function (require, module, exports, $require, $importMeta, $imprt) {...})` */
  readonly script: string;
  /** The script's positions in the module's code. */
  readonly map: RawSourceMap;
  /** What the module imports with import statements, which the start module imports for it. */
  readonly imports: readonly string[];
}

/**
 * The names the script's function takes: the module's imports as `require`d namespaces (the
 * start module's), and the module's own free `require` (Node's, from the module's place), its
 * `import.meta`, and its `import()` renamed, which the start module passes too (`$imprt` is as
 * long as `import`, so that the positions esbuild mapped do not move; V8 lets a script's own
 * `import()` through only with an experimental option of Node's, which warns at its first use).
 */
const PARAMETERS = ["require", "module", "exports", "$require", "$importMeta", "$imprt"] as const;
const DYNAMIC_IMPORT = "$imprt";
/** Names the script gives what the module had: the module's own must not be among them. */
const RENAMED = ["$require", "$importMeta", "$imprt", "$module", "$exports"];

/**
 * A bundle's ES module as a script, which V8 can keep a code cache for (Node 20 keeps none for
 * ES modules): esbuild's CommonJS form of the module's code in a strict function. Its import
 * statements become `require` calls that the start module answers with the namespaces it
 * imported (so an ES-only package loads as it did, and a binding reads its export live); the
 * module's own `require` (the banner's, which bundled CommonJS packages call), `import.meta`
 * and `import()` become parameters too. Undefined where the module cannot be such a script
 * (top-level await, an import with attributes, anything esbuild warns of): it runs as a module.
 */
export const scriptOfBundle = async (code: string, banner: string): Promise<BundleScript | undefined> => {
  if (!code.startsWith(banner) || RENAMED.some((name) => code.includes(name))) return undefined;
  await init;
  const imports = new Set<string>();
  for (const specifier of parse(code)[0]) {
    // Dynamic imports and import.meta are the transform's; a phase or attributes are not.
    if (specifier.t === 2 || specifier.t === 3) continue;
    if (specifier.t !== 1 || specifier.n === undefined || specifier.a !== -1) return undefined;
    imports.add(specifier.n);
  }
  let result;
  try {
    result = await transform(banner.replace(/./g, " ") + code.slice(banner.length), {
      format: "cjs",
      platform: "node",
      target: "node20",
      // Free names only: the `require` calls esbuild writes for import statements stay.
      define: { require: "$require", "import.meta": "$importMeta", module: "$module", exports: "$exports" },
      banner: `(function (${PARAMETERS.join(", ")}) {"use strict";`,
      footer: "})",
      sourcemap: "external",
      // Not `.mjs`: esbuild would read a default import Node's way (the whole namespace, here),
      // where the namespaces the script is given mark theirs with `__esModule`.
      sourcefile: "bundle.js",
      logLevel: "silent",
    });
  } catch {
    return undefined;
  }
  if (result.warnings.length > 0) return undefined;
  const [found, exported] = parse(result.code);
  if (exported.length > 0) return undefined;
  let script = "";
  let at = 0;
  for (const specifier of found) {
    if (specifier.t !== 2 || !result.code.startsWith("import", specifier.ss)) return undefined;
    script += result.code.slice(at, specifier.ss) + DYNAMIC_IMPORT;
    at = specifier.ss + "import".length;
  }
  script += result.code.slice(at);
  try {
    // Compiled here once: a script V8 would refuse runs as the module instead of failing in
    // every thread.
    new Script(script);
  } catch {
    return undefined;
  }
  return { script, map: JSON.parse(result.map) as RawSourceMap, imports: [...imports] };
};

/**
 * The module a thread loads to run the script: it imports what the bundle's module imported
 * (resolved from the same place, in the same order, before the bundle's code runs) and hands
 * the namespaces, its `import.meta` and its `import()` to thread-script.js.
 */
export const startModule = (
  made: BundleScript,
  script: { name: string; digest: string },
  loaderUrl: string,
): string => {
  const namespaces = made.imports.map((specifier, i) => ({ specifier, name: `$${i}` }));
  return [
    ...namespaces.map(({ specifier, name }) => `import * as ${name} from ${JSON.stringify(specifier)};`),
    `import { loadThreadScript } from ${JSON.stringify(loaderUrl)};`,
    "export default loadThreadScript(",
    `  new URL(${JSON.stringify(`./${script.name}`)}, import.meta.url),`,
    `  ${JSON.stringify(script.digest)},`,
    `  { ${namespaces.map(({ specifier, name }) => `${JSON.stringify(specifier)}: ${name}`).join(", ")} },`,
    "  import.meta,",
    "  (specifier, options) => import(specifier, options),",
    ");",
    "",
  ].join("\n");
};
