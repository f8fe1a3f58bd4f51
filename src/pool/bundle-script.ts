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
  /** The module's import statements, as it has them, which the start module makes again. */
  readonly statements: readonly string[];
  /** What those import, each once: the namespaces the script's `require` answers with. */
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
 * (top-level await, an import with attributes, code es-module-lexer cannot read, anything
 * esbuild warns of): it runs as a module.
 */
export const scriptOfBundle = async (code: string, banner: string): Promise<BundleScript | undefined> => {
  if (!code.startsWith(banner) || RENAMED.some((name) => code.includes(name))) return undefined;
  const imports = new Set<string>();
  const statements: string[] = [];
  const found = await lexed(code);
  if (!found) return undefined;
  for (const specifier of found[0]) {
    // Dynamic imports and import.meta are the transform's; a phase or attributes are not.
    if (specifier.t === 2 || specifier.t === 3) continue;
    const statement = code.slice(specifier.ss, specifier.se);
    if (
      specifier.t !== 1 ||
      specifier.n === undefined ||
      specifier.a !== -1 ||
      !statement.startsWith("import")
    )
      return undefined;
    statements.push(statement);
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
  const converted = await lexed(result.code);
  if (!converted || converted[1].length > 0) return undefined;
  let script = "";
  let at = 0;
  for (const specifier of converted[0]) {
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
  return { script, map: JSON.parse(result.map) as RawSourceMap, statements, imports: [...imports] };
};

/** es-module-lexer's reading of the code; undefined where it cannot read it (it throws). */
const lexed = async (code: string) => {
  await init;
  try {
    return parse(code);
  } catch {
    return undefined;
  }
};

/**
 * The module a thread loads to run the script. It makes the module's import statements again,
 * so that Node loads and links what the module imported as it did (from the same place, in the
 * same order, before the bundle's code runs; a named import that a package does not export
 * fails as it did), imports each one's namespace, and hands those, its `import.meta` and its
 * `import()` to thread-script.js (its copy beside it, `loader`). Its own names begin `$imprt`, a
 * name the module has none of.
 */
export const startModule = (made: BundleScript, scriptName: string, loaderUrl: string): string => {
  const namespaces = made.imports.map((specifier, i) => ({ specifier, name: `${DYNAMIC_IMPORT}${i}` }));
  const load = `${DYNAMIC_IMPORT}Load`;
  return [
    ...made.statements.map((statement) => `${statement};`),
    ...namespaces.map(({ specifier, name }) => `import * as ${name} from ${JSON.stringify(specifier)};`),
    `import { loadThreadScript as ${load} } from ${JSON.stringify(loaderUrl)};`,
    `export default ${load}(`,
    `  new URL(${JSON.stringify(`./${scriptName}`)}, import.meta.url),`,
    `  { ${namespaces.map(({ specifier, name }) => `${JSON.stringify(specifier)}: ${name}`).join(", ")} },`,
    "  import.meta,",
    "  (specifier, options) => import(specifier, options),",
    ");",
    "",
  ].join("\n");
};
