import { createHash, randomBytes } from "node:crypto";
import { closeSync, existsSync, fstatSync, openSync, type Stats } from "node:fs";
import { type FileHandle, mkdir, open, readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** One file a bundle was made from, as it was read. */
export interface InputRecord {
  /** Of the content read. */
  readonly digest: string;
  /**
   * The file's size, times and inode as they were just before it was read (`statKey`); absent
   * when the file had changed too recently for them to vouch for it (see RACY_MS), or changed
   * while it was read.
   */
  readonly stat?: string;
}

/**
 * What a thread bundle was made from: each file (absolute path) as it was read. A start whose
 * files all read the same uses the bundle without building it again (a build that bundles a
 * package takes 0.35-0.97 s). A file whose size, times and inode are as recorded is taken as
 * unchanged without reading it: the check read and hashed every file (751 for the caption
 * registry, 45-90 ms of every start, before the pool could start its threads); now it stats
 * them and reads only those whose stat changed.
 */
export interface BuildRecord {
  /** The bundle's file name, in the record's directory. */
  readonly bundle: string;
  readonly inputs: Readonly<Record<string, InputRecord>>;
}

export const digest = (contents: string | Uint8Array) => createHash("sha1").update(contents).digest("hex");

/**
 * The change time is in it because nothing can set it back: a file rewritten with the same size
 * and its old modification time restored (`touch -r`, an archive or copy that keeps times) still
 * gets a new one.
 */
const statKey = (stats: Stats) => `${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}:${stats.ino}`;

/**
 * How recent a change may be for a file's stat to be believed later. A file can change again
 * within the resolution of its times (2 s on some file systems) and keep the same ones: one
 * changed that recently before it was read is read and hashed at every check, until a check
 * finds it older and records its stat.
 */
const RACY_MS = 2_000;

/**
 * The file system's own clock, which a file's times come from (a network file system's may
 * differ from this process's): the modification time of a file written in `dir` now. Where
 * nothing can be written there, this process's clock.
 */
export const fileSystemNow = async (dir: string): Promise<number> => {
  const probe = join(dir, `.clock-${randomBytes(6).toString("hex")}`);
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(probe, "");
    return (await stat(probe)).mtimeMs;
  } catch {
    return Date.now();
  } finally {
    await unlink(probe).catch(() => {});
  }
};

const changedSince = (stats: Stats, at: number) => Math.max(stats.mtimeMs, stats.ctimeMs) >= at;

/**
 * A file read through one handle: its stat before and after the read, and what was read. The
 * handle holds the same file throughout (a save that renames a new file into place does not
 * swap it midway), and opening it makes a network file system check its cached times. The stat
 * is recorded only if it held over the read and its last change is older than `now` (the file
 * system's clock before the read) by RACY_MS.
 */
const readThrough = async (
  handle: FileHandle,
  before: Stats,
  now: number,
): Promise<{ contents: Buffer; input: InputRecord; before: Stats }> => {
  const contents = await handle.readFile();
  const after = await handle.stat();
  const key = statKey(before);
  const stable = statKey(after) === key && !changedSince(before, now - RACY_MS);
  return { contents, input: { digest: digest(contents), ...(stable ? { stat: key } : {}) }, before };
};

const readInput = async (path: string, now: number) => {
  const handle = await open(path, "r");
  try {
    return await readThrough(handle, await handle.stat(), now);
  } finally {
    await handle.close();
  }
};

/** Files that decide how esbuild compiles and resolves the files in a directory and below. */
const PROJECT_FILES = ["package.json", "tsconfig.json"];

/**
 * A digest no content has: a file esbuild read itself that changed after the build began (what
 * esbuild bundled may be the content before the change), so the next start builds again.
 */
const CHANGED_DURING_BUILD = "changed during the build";

/**
 * The files one build read, each as it was read (not as a later read would find it: a file
 * saved during the build must make the next start build again). `startedAt`: the file system's
 * clock before the build read anything.
 */
export class BuildInputs {
  private readonly inputs = new Map<string, InputRecord>();
  private readonly above = new Map<string, readonly string[]>();

  constructor(private readonly startedAt: number) {}

  /** Reads a file for the build, and records it as read. */
  async load(path: string): Promise<string> {
    const { contents, input } = await readInput(path, this.startedAt);
    this.inputs.set(path, input);
    return contents.toString("utf8");
  }

  /**
   * Every input: those the build loaded here, the rest of `files` (esbuild read them itself,
   * and they are read again now, after the build), and every package.json and tsconfig.json above
   * each (`type`, `exports`, `sideEffects`, compiler options; a package's may be a directory or
   * two above the file).
   */
  async all(files: Iterable<string>): Promise<Record<string, InputRecord>> {
    const paths = new Set(files);
    for (const path of [...paths]) for (const found of this.projectFilesOver(dirname(path))) paths.add(found);
    for (const path of paths) {
      if (this.inputs.has(path)) continue;
      const { input, before } = await readInput(path, this.startedAt);
      this.inputs.set(path, changedSince(before, this.startedAt) ? { digest: CHANGED_DURING_BUILD } : input);
    }
    return Object.fromEntries(this.inputs);
  }

  private projectFilesOver(dir: string): readonly string[] {
    let found = this.above.get(dir);
    if (!found) {
      const parent = dirname(dir);
      found = [
        ...PROJECT_FILES.map((name) => join(dir, name)).filter((path) => existsSync(path)),
        ...(parent === dir ? [] : this.projectFilesOver(parent)),
      ];
      this.above.set(dir, found);
    }
    return found;
  }
}

const isRecord = (value: unknown): value is BuildRecord => {
  if (typeof value !== "object" || value === null) return false;
  const { bundle, inputs } = value as Record<string, unknown>;
  return (
    typeof bundle === "string" &&
    bundle === basename(bundle) &&
    typeof inputs === "object" &&
    inputs !== null &&
    Object.values(inputs).every(
      (input: unknown) =>
        typeof input === "object" &&
        input !== null &&
        typeof (input as InputRecord).digest === "string" &&
        ["string", "undefined"].includes(typeof (input as InputRecord).stat),
    )
  );
};

/**
 * A file's stat through a descriptor: opening it makes a network file system check the times it
 * caches. Synchronous: the 778 files of a registry with `effect` take 8-15 ms so, 36-69 ms through
 * libuv's thread pool (and a stat by path alone, 5-19 ms, could be one a cache kept).
 */
const openedStat = (path: string): Stats | undefined => {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    return fstatSync(fd);
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
};

/**
 * Whether a file is as recorded: by its stat where that was recorded and still holds, else by
 * its content. Its record as of now, or undefined if it changed (or cannot be read). `now`: the
 * file system's clock, asked for only when a file must be read, before it is.
 */
const checkInput = async (
  path: string,
  recorded: InputRecord,
  now: () => Promise<number>,
): Promise<InputRecord | undefined> => {
  const stats = openedStat(path);
  if (!stats) return undefined;
  if (recorded.stat !== undefined && statKey(stats) === recorded.stat) return recorded;
  const clock = await now();
  const read = await readInput(path, clock).catch(() => undefined);
  return read?.input.digest === recorded.digest ? read.input : undefined;
};

/**
 * The bundle a record names, if the record is whole and every file it lists reads as it did.
 * Where a file had to be read (its stat changed, its content did not: a checkout, a copy), the
 * record takes its stat as of now, so the next start need not read it.
 */
export const builtAlready = async (recordPath: string): Promise<string | undefined> => {
  let record: unknown;
  try {
    record = JSON.parse(await readFile(recordPath, "utf8"));
  } catch {
    return undefined;
  }
  if (!isRecord(record)) return undefined;
  const bundle = join(dirname(recordPath), record.bundle);
  if (!existsSync(bundle)) return undefined;
  const inputs = Object.entries(record.inputs);
  let clock: Promise<number> | undefined;
  const now = () => (clock ??= fileSystemNow(dirname(recordPath)));
  const checked = await Promise.all(inputs.map(([path, input]) => checkInput(path, input, now)));
  if (checked.some((input) => input === undefined)) return undefined;
  if (checked.some((input, i) => input!.stat !== inputs[i]![1].stat))
    await writeRecord(recordPath, {
      bundle: record.bundle,
      inputs: Object.fromEntries(inputs.map(([path], i) => [path, checked[i]!])),
    });
  return bundle;
};

/** Written under a temporary name and renamed: a reader never finds half a file. */
export const replaceFile = async (path: string, contents: string | Uint8Array): Promise<void> => {
  const temporary = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    await writeFile(temporary, contents);
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary).catch(() => {});
    throw error;
  }
};

/**
 * Replaced whole, as a bundle is. A record that cannot be written (a read-only directory) only
 * means the next start builds again.
 */
export const writeRecord = async (recordPath: string, record: BuildRecord): Promise<void> => {
  await replaceFile(recordPath, JSON.stringify(record)).catch(() => {});
};
