/**
 * Source maps (version 3) with some of their sources taken out, and maps composed. A thread
 * parses its bundle's map at the first stack it maps; the mappings into a bundled package are
 * most of that map and name no code of the application's.
 */

export interface RawSourceMap {
  readonly version: number;
  readonly file?: string;
  readonly sourceRoot?: string;
  readonly sources: readonly string[];
  readonly sourcesContent?: ReadonlyArray<string | null>;
  readonly names: readonly string[];
  readonly mappings: string;
}

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const DIGITS = new Map([...BASE64].map((char, digit) => [char, digit]));

/** One segment's fields, each a base64 VLQ: 1, 4 or 5 of them. */
const decodeSegment = (text: string): number[] => {
  const fields: number[] = [];
  let value = 0;
  let scale = 1;
  for (const char of text) {
    const digit = DIGITS.get(char);
    if (digit === undefined) throw new Error(`source map mappings hold ${JSON.stringify(char)}`);
    value += (digit & 31) * scale;
    if (digit & 32) scale *= 32;
    else {
      fields.push(value % 2 === 1 ? -(value - 1) / 2 : value / 2);
      value = 0;
      scale = 1;
    }
  }
  if (scale !== 1) throw new Error("source map mappings end inside a number");
  return fields;
};

const encodeField = (field: number): string => {
  let value = field < 0 ? -field * 2 + 1 : field * 2;
  let text = "";
  do {
    const digit = value % 32;
    value = Math.floor(value / 32);
    text += BASE64[value > 0 ? digit | 32 : digit];
  } while (value > 0);
  return text;
};

/** Numbers the entries of a list that are kept anew, in the order they are first used. */
class Renumbering {
  /** Old numbers, by new number. */
  readonly kept: number[] = [];
  private readonly numbers = new Map<number, number>();
  number(old: number): number {
    let number = this.numbers.get(old);
    if (number === undefined) {
      number = this.kept.push(old) - 1;
      this.numbers.set(old, number);
    }
    return number;
  }
}

/** Where a mapped segment points: a source (by number), line and column, and maybe a name. */
interface Target {
  readonly source: number;
  readonly line: number;
  readonly column: number;
  readonly name?: number;
}

/**
 * The mappings with each mapped segment pointed where `to` says. Where it says nowhere, the
 * code maps to nothing: the line gets a segment that maps to nothing where that code begins, so
 * that a position in it is not taken for the code mapped before it (a stack frame there names
 * the generated file's own line).
 */
const remapped = (mappings: string, to: (read: Target) => Target | undefined): string => {
  // Fields are relative to the segment before: absolute values as read, and as written.
  const read = { source: 0, line: 0, column: 0, name: 0 };
  const written = { source: 0, line: 0, column: 0, name: 0 };
  let lastLineEndsUnmapped = false;
  const lines = mappings.split(";").map((lineText) => {
    const segments: string[] = [];
    let readColumn = 0;
    let writtenColumn = 0;
    let unmapped = false;
    for (const segmentText of lineText.split(",")) {
      if (segmentText === "") continue;
      const fields = decodeSegment(segmentText);
      readColumn += fields[0]!;
      let target: Target | undefined;
      if (fields.length >= 4) {
        read.source += fields[1]!;
        read.line += fields[2]!;
        read.column += fields[3]!;
        if (fields.length === 5) read.name += fields[4]!;
        const { source, line, column, name } = read;
        target = to(fields.length === 5 ? { source, line, column, name } : { source, line, column });
      }
      if (target === undefined) {
        if (!unmapped) {
          segments.push(encodeField(readColumn - writtenColumn));
          writtenColumn = readColumn;
          unmapped = true;
        }
        continue;
      }
      unmapped = false;
      let text =
        encodeField(readColumn - writtenColumn) +
        encodeField(target.source - written.source) +
        encodeField(target.line - written.line) +
        encodeField(target.column - written.column);
      writtenColumn = readColumn;
      written.source = target.source;
      written.line = target.line;
      written.column = target.column;
      if (target.name !== undefined) {
        text += encodeField(target.name - written.name);
        written.name = target.name;
      }
      segments.push(text);
    }
    lastLineEndsUnmapped = unmapped;
    return segments.join(",");
  });
  // Node 20 reads a one-field segment that ends the mappings as if it carried the fields of the
  // segment before it: an empty line after it makes it end a line, read as it should be.
  return lines.join(";") + (lastLineEndsUnmapped ? ";" : "");
};

/** The map without the mappings into the sources `drop` names. */
export const withoutSources = (map: RawSourceMap, drop: (source: string) => boolean): RawSourceMap => {
  const dropped = map.sources.map(drop);
  const sources = new Renumbering();
  const names = new Renumbering();
  const mappings = remapped(map.mappings, ({ source, line, column, name }) =>
    dropped[source]
      ? undefined
      : {
          source: sources.number(source),
          line,
          column,
          ...(name === undefined ? {} : { name: names.number(name) }),
        },
  );
  // Only the fields this module knows: any other (an ignore list) would number the old sources.
  const { version, file, sourceRoot, sourcesContent } = map;
  return {
    version,
    ...(file === undefined ? {} : { file }),
    ...(sourceRoot === undefined ? {} : { sourceRoot }),
    sources: sources.kept.map((old) => map.sources[old]!),
    ...(sourcesContent === undefined
      ? {}
      : { sourcesContent: sources.kept.map((old) => sourcesContent[old] ?? null) }),
    names: names.kept.map((old) => map.names[old]!),
    mappings,
  };
};

/** A position in a map's sources: the source as the map names it, line and column from 0. */
export interface SourcePosition {
  readonly source: string;
  readonly line: number;
  readonly column: number;
}

/**
 * Finds where a position in the generated file came from. Each line's segments are decoded at
 * the first lookup that needs them (the fields carry over from line to line, so every line
 * before it too), and kept.
 */
export class SourceMapLookup {
  private readonly lines: readonly string[];
  /** Per decoded line: its segments' fields as absolute values, sorted by generated column. */
  private readonly decoded: number[][][] = [];
  private readonly state = { source: 0, line: 0, column: 0 };

  constructor(private readonly map: RawSourceMap) {
    this.lines = map.mappings.split(";");
  }

  /** Undefined where the position maps to nothing (a dropped source's code, or none at all). */
  find(line: number, column: number): SourcePosition | undefined {
    const segments = this.segmentsOf(line);
    let found: number[] | undefined;
    for (const segment of segments) {
      if (segment[0]! > column) break;
      found = segment;
    }
    if (!found || found.length < 4) return undefined;
    const source = this.map.sources[found[1]!];
    return source === undefined ? undefined : { source, line: found[2]!, column: found[3]! };
  }

  private segmentsOf(line: number): number[][] {
    while (this.decoded.length <= line && this.decoded.length < this.lines.length) {
      const text = this.lines[this.decoded.length]!;
      const segments: number[][] = [];
      let column = 0;
      for (const segmentText of text.split(",")) {
        if (segmentText === "") continue;
        const fields = decodeSegment(segmentText);
        column += fields[0]!;
        if (fields.length < 4) {
          segments.push([column]);
          continue;
        }
        this.state.source += fields[1]!;
        this.state.line += fields[2]!;
        this.state.column += fields[3]!;
        segments.push([column, this.state.source, this.state.line, this.state.column]);
      }
      this.decoded.push(segments.sort((a, b) => a[0]! - b[0]!));
    }
    return this.decoded[line] ?? [];
  }
}

/**
 * The map of code made from generated code: `outer` maps it to the generated code, `inner` the
 * generated code to its sources; the result maps it to those sources, where both map it (and
 * to nothing elsewhere). Names are left out.
 */
export const composeMaps = (outer: RawSourceMap, inner: RawSourceMap): RawSourceMap => {
  const lookup = new SourceMapLookup(inner);
  const innerSource = new Map(inner.sources.map((source, i) => [source, i]));
  const sources = new Renumbering();
  const mappings = remapped(outer.mappings, ({ line, column }) => {
    const found = lookup.find(line, column);
    return (
      found && {
        source: sources.number(innerSource.get(found.source)!),
        line: found.line,
        column: found.column,
      }
    );
  });
  return {
    version: 3,
    ...(inner.sourceRoot === undefined ? {} : { sourceRoot: inner.sourceRoot }),
    sources: sources.kept.map((old) => inner.sources[old]!),
    names: [],
    mappings,
  };
};
