import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Command } from "ioredis";
import { dataNodes, type RedisClient } from "./connection.js";

/** How a server runs the library: as Redis Functions (7.0 on), else as scripts. */
type Mode = "functions" | "scripts";

/** Stands for the library's name in its source until the name (a hash of that source) is known. */
const LIBRARY = "__LIBRARY__";

const sha1 = (text: string) => createHash("sha1").update(text).digest("hex");

const errorText = (error: unknown) => (error instanceof Error ? error.message : "");

/** FCALL of a function the server does not have (a restarted or new node, or a flushed one). */
const functionMissing = (error: unknown) => errorText(error).startsWith("ERR Function not found");

/**
 * The command `call` / `callBuffer` would build, sent without them: they take the arguments as a
 * spread (a claim at concurrency 100 carries hundreds, with its completions), and drains of
 * no-op jobs ran 17-24 % faster at concurrency 100 without that (bench/PERFORMANCE.md, "Script calls
 * without ioredis's call"). A subclass of Command with its own `toWritable` (one buffer per
 * request) ran 25 % slower instead: only ioredis's own class. A function of the module, not a
 * closure made per call, which tsx names (`keepNames`) with a property definition each time.
 */
const sendScript = (
  redis: RedisClient,
  command: string,
  target: string,
  keys: readonly string[],
  args: ReadonlyArray<string | number>,
  buffers: boolean,
): Promise<unknown> => {
  const request = new Command(command, [target, keys.length, ...keys, ...args], {
    // No keyPrefix, which `call` would add: `Queue` refuses a client that has one.
    replyEncoding: buffers ? null : "utf8",
  });
  void redis.sendCommand(request);
  return request.promise;
};

/** A server without Redis Functions (before 7.0), or whose ACL refuses them to this user. */
const functionsRefused = (error: unknown) =>
  /^ERR unknown command|^NOPERM/.test(errorText(error)) && /fcall|function/i.test(errorText(error));

/**
 * The queue's Lua scripts, one library. On a server with Redis Functions it is loaded once
 * (`FUNCTION LOAD`) and each script is a function of it: the shared helpers are built when it
 * loads, where a script (`EVALSHA`) builds all of them again on every call, about a third of a
 * small claim's time in Redis (bench/PERFORMANCE.md, item 15). A server without functions, or whose
 * ACL refuses them, runs the same code as scripts. Redis forgets functions when it restarts
 * empty, as it forgets scripts: a call that finds its function gone loads the library again and
 * is repeated.
 *
 * Each file is a script body over KEYS and ARGV; `-- @include name` lines name the helpers it
 * uses (`includes/name.lua`), and a `-- @flags …` line the function flags it runs with (Redis's
 * `allow-oom`, say, for a script that only deletes: without it a function is refused whole while
 * Redis is at maxmemory).
 */
export class LuaLibrary<K extends string = string> {
  readonly name: string;
  /** The source `FUNCTION LOAD` takes: every include once, then each script as a function. */
  readonly source: string;
  private readonly modes = new WeakMap<RedisClient, Mode>();
  private readonly loading = new WeakMap<RedisClient, Promise<void>>();

  private constructor(
    dir: URL,
    readonly scripts: Readonly<Record<K, LuaScript>>,
  ) {
    const all = Object.values<LuaScript>(scripts);
    const includes = [...new Set(all.flatMap((s) => s.includes))];
    // The name is the code's hash, and each function's name holds it: libraries of two versions
    // (a rolling upgrade) live side by side, as function names are one namespace per server.
    const body = [
      ...includes.map((include) => readFileSync(new URL(`includes/${include}.lua`, dir), "utf8")),
      ...all.map((s) => s.asFunction(LIBRARY)),
    ].join("\n");
    this.name = `ratatoskr_${sha1(body).slice(0, 16)}`;
    for (const script of all) script.attach(this);
    this.source = `#!lua name=${this.name}\n${body.replaceAll(LIBRARY, this.name)}`;
  }

  /** One script per file; `files` maps each script's name to its file (without `.lua`). */
  static fromDirectory<K extends string>(dir: URL, files: Record<K, string>): LuaLibrary<K> {
    const scripts = Object.fromEntries(
      Object.entries<string>(files).map(([name, file]) => [name, LuaScript.fromFile(dir, name, file)]),
    ) as Record<K, LuaScript>;
    return new LuaLibrary(dir, scripts);
  }

  /**
   * Loads the library into every node that holds data (each master of a Cluster), or, where
   * functions are not to be had, each script into the script cache. Once per client, however
   * many callers find a function missing at once.
   */
  load(redis: RedisClient): Promise<void> {
    const pending = this.loading.get(redis);
    if (pending) return pending;
    const loaded = this.loadNow(redis).finally(() => this.loading.delete(redis));
    this.loading.set(redis, loaded);
    return loaded;
  }

  private async loadNow(redis: RedisClient): Promise<void> {
    if (this.modes.get(redis) !== "scripts") {
      try {
        await Promise.all(dataNodes(redis).map((node) => this.loadFunctions(node)));
        this.modes.set(redis, "functions");
        return;
      } catch (error) {
        if (!functionsRefused(error)) throw error;
        this.modes.set(redis, "scripts");
      }
    }
    await Promise.all(
      dataNodes(redis).flatMap((node) =>
        Object.values<LuaScript>(this.scripts).map((s) => node.script("LOAD", s.source)),
      ),
    );
  }

  private async loadFunctions(node: RedisClient): Promise<void> {
    try {
      await node.call("FUNCTION", "LOAD", this.source);
    } catch (error) {
      // Loaded already, by another process of this version or an earlier call.
      if (!errorText(error).includes(`'${this.name}' already exists`)) throw error;
    }
  }

  /** Functions until the server shows it has none for this client. */
  usesFunctions(redis: RedisClient): boolean {
    return this.modes.get(redis) !== "scripts";
  }

  /** The server answered a call as one without functions: scripts from now on, for this client. */
  fallBack(redis: RedisClient, error: unknown): boolean {
    if (!functionsRefused(error)) return false;
    this.modes.set(redis, "scripts");
    return true;
  }
}

/**
 * One script of a library: called by name as a function (FCALL), or by SHA as a script
 * (EVALSHA, and EVAL once the server has lost it).
 */
export class LuaScript {
  /** The whole script (its includes inlined), as EVAL takes it. */
  readonly source: string;
  readonly sha: string;
  private functionName = "";
  private library: LuaLibrary | undefined;

  private constructor(
    readonly name: string,
    private readonly body: string,
    readonly includes: readonly string[],
    private readonly flags: readonly string[],
    read: (include: string) => string,
  ) {
    this.source = body.replace(/^-- @include (\w[\w-]*)\s*$/gm, (_, include: string) => read(include));
    this.sha = sha1(this.source);
  }

  static fromFile(dir: URL, name: string, file: string): LuaScript {
    const read = (path: string) => readFileSync(new URL(path, dir), "utf8");
    const body = read(`${file}.lua`);
    const includes = [...body.matchAll(/^-- @include (\w[\w-]*)\s*$/gm)].map((m) => m[1]!);
    const flags = /^-- @flags (.+)$/m.exec(body)?.[1]?.trim().split(/\s+/) ?? [];
    return new LuaScript(name, body, includes, flags, (include) => read(`includes/${include}.lua`));
  }

  attach(library: LuaLibrary) {
    this.library = library;
    this.functionName = `${library.name}_${this.name}`;
  }

  /** The script as a function of the library: its body, run as a script's is, over KEYS and ARGV. */
  asFunction(library: string): string {
    const body = this.body.replace(/^-- @include .*$/gm, "");
    const flags = this.flags.map((flag) => `'${flag}'`).join(", ");
    // script_…: a local of the library's, so it must not shadow a helper the later ones call.
    return [
      `local function script_${this.name}(KEYS, ARGV)`,
      body,
      "end",
      `redis.register_function{ function_name = '${library}_${this.name}', callback = script_${this.name}, flags = { ${flags} } }`,
    ].join("\n");
  }

  run(redis: RedisClient, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    return this.send(redis, keys, args, false);
  }

  /** `run`, with every string of the reply as a Buffer (for binary values). */
  runBuffer(
    redis: RedisClient,
    keys: readonly string[],
    args: ReadonlyArray<string | number>,
  ): Promise<unknown> {
    return this.send(redis, keys, args, true);
  }

  private async send(
    redis: RedisClient,
    keys: readonly string[],
    args: ReadonlyArray<string | number>,
    buffers: boolean,
  ): Promise<unknown> {
    const library = this.library!;
    if (library.usesFunctions(redis)) {
      try {
        return await sendScript(redis, "FCALL", this.functionName, keys, args, buffers);
      } catch (error) {
        if (functionMissing(error)) {
          await library.load(redis);
          if (library.usesFunctions(redis))
            return await sendScript(redis, "FCALL", this.functionName, keys, args, buffers);
        } else if (!library.fallBack(redis, error)) throw error;
      }
    }
    try {
      return await sendScript(redis, "EVALSHA", this.sha, keys, args, buffers);
    } catch (error) {
      if (!errorText(error).startsWith("NOSCRIPT")) throw error;
      // EVAL, not SCRIPT LOAD then EVALSHA: a Cluster sends EVAL to the node that holds the keys
      // (and that node caches the script), but SCRIPT LOAD to any node.
      return await sendScript(redis, "EVAL", this.source, keys, args, buffers);
    }
  }
}
