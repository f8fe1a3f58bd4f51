import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { dataNodes, type RedisClient } from "./connection.js";

/**
 * A Lua script read from disk once, with `-- @include name` lines replaced by
 * `includes/name.lua`, and called by SHA. Redis forgets scripts when it restarts, so a NOSCRIPT
 * answer loads it again and repeats the call.
 */
export class LuaScript {
  readonly sha: string;

  private constructor(
    readonly name: string,
    readonly source: string,
  ) {
    this.sha = createHash("sha1").update(source).digest("hex");
  }

  static fromDirectory(dir: URL, name: string): LuaScript {
    const read = (file: string) => readFileSync(new URL(file, dir), "utf8");
    const source = read(`${name}.lua`).replace(/^-- @include (\w[\w-]*)\s*$/gm, (_, include: string) =>
      read(`includes/${include}.lua`),
    );
    return new LuaScript(name, source);
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
    const call = (command: string, script: string) =>
      buffers
        ? redis.callBuffer(command, script, keys.length, ...keys, ...args)
        : redis.call(command, script, keys.length, ...keys, ...args);
    try {
      return await call("EVALSHA", this.sha);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
      // EVAL, not SCRIPT LOAD then EVALSHA: a Cluster sends EVAL to the node that holds the keys
      // (and that node caches the script), but SCRIPT LOAD to any node.
      return await call("EVAL", this.source);
    }
  }

  async load(redis: RedisClient): Promise<void> {
    await Promise.all(dataNodes(redis).map((node) => node.script("LOAD", this.source)));
  }
}
