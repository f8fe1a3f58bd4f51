/**
 * Where a name a package's index re-exports comes from: `name` of the module at `from`
 * (relative to the index), or that module's whole namespace (`name` "*").
 */
export interface Reexport {
  readonly from: string;
  readonly name: string;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
const STAR_AS = /^export\s*\*\s*as\s+([A-Za-z_$][\w$]*)\s+from\s*"(\.\/[^"]+)"\s*;?$/;
const NAMED = /^export\s*\{([^}]*)\}\s*from\s*"(\.\/[^"]+)"\s*;?$/;
const COMMENTS = /\/\*[\s\S]*?\*\/|\/\/[^\n]*/g;

/** `a`, `a as b`, `type a` or `type a as b`, with its parts; undefined for anything else. */
const specifier = (text: string) => {
  const words = text.trim().split(/\s+/);
  const typeOnly = words[0] === "type" && words.length !== 1 && words[1] !== "as";
  if (typeOnly) words.shift();
  const [name, as, local] = words;
  if (!name || !IDENTIFIER.test(name)) return undefined;
  if (words.length === 1) return { name, local: name, typeOnly };
  if (words.length === 3 && as === "as" && local && IDENTIFIER.test(local)) return { name, local, typeOnly };
  return undefined;
};

/**
 * What an index made only of re-exports (`export * as Schema from "./Schema.js"`, `export { pipe }
 * from "./Function.js"`), as `effect`'s is, gives each name it exports. Undefined for an index
 * with anything else in it: code of its own, which leaving the index out would leave unrun.
 */
export const reexportsOf = (index: string): ReadonlyMap<string, Reexport> | undefined => {
  const reexports = new Map<string, Reexport>();
  const statements = index.replace(COMMENTS, "").split(/;|\n(?=\s*export\b)/);
  for (const statement of statements) {
    const text = statement.replace(/\s+/g, " ").trim();
    if (text === "") continue;
    const star = STAR_AS.exec(text);
    if (star) {
      reexports.set(star[1]!, { from: star[2]!, name: "*" });
      continue;
    }
    const named = NAMED.exec(text);
    if (!named) return undefined;
    for (const item of named[1]!.split(",")) {
      if (item.trim() === "") continue;
      const parts = specifier(item);
      if (!parts || parts.typeOnly) return undefined;
      reexports.set(parts.local, { from: named[2]!, name: parts.name });
    }
  }
  return reexports;
};

/**
 * `import {...} from "<pkg>"` as a declaration of its own lines (at a line's start, ending one),
 * which every formatter writes and no string or comment holds in practice; a match in a
 * template string would be rewritten to code that imports the same bindings.
 */
const importsOf = (pkg: string) =>
  new RegExp(
    `^import\\s*\\{([^}]*)\\}\\s*from\\s*(["'])${pkg.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}\\2[ \\t]*;?[ \\t]*$`,
    "gm",
  );

/**
 * Rewrites each `import { A, B as C } from "<pkg>"` in `source` to import every name from the
 * module it comes from (`where`: the specifier of that module, as `"effect/Schema"`, and the
 * name there, "*" for its namespace): `import * as A from "effect/A"; import * as C from
 * "effect/B";`. A statement with a name `where` does not place, or one it cannot read, stays
 * as it is. Type-only names go (nothing of theirs is run); a statement's lines stay as many, so
 * the source map's lines still hold.
 */
export const importFromModules = (
  source: string,
  pkg: string,
  where: (name: string) => { readonly specifier: string; readonly name: string } | undefined,
): string =>
  source.replace(importsOf(pkg), (statement, clause: string) => {
    const imports: string[] = [];
    for (const item of clause.replace(COMMENTS, "").split(",")) {
      if (item.trim() === "") continue;
      const parts = specifier(item);
      if (!parts) return statement;
      if (parts.typeOnly) continue;
      const from = where(parts.name);
      if (!from) return statement;
      const quoted = JSON.stringify(from.specifier);
      imports.push(
        from.name === "*"
          ? `import * as ${parts.local} from ${quoted};`
          : `import { ${from.name === parts.local ? from.name : `${from.name} as ${parts.local}`} } from ${quoted};`,
      );
    }
    return imports.join(" ") + "\n".repeat(statement.split("\n").length - 1);
  });
