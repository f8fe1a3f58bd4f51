import { LuaScript } from "../redis/lua-script.js";

const dir = new URL("./lua/", import.meta.url);

/** One script per state transition; reading them is reading the queue's state machine. */
export const scripts = {
  enqueue: LuaScript.fromDirectory(dir, "enqueue"),
  claim: LuaScript.fromDirectory(dir, "claim"),
  renew: LuaScript.fromDirectory(dir, "renew"),
  complete: LuaScript.fromDirectory(dir, "complete"),
  fail: LuaScript.fromDirectory(dir, "fail"),
  promote: LuaScript.fromDirectory(dir, "promote"),
  cancel: LuaScript.fromDirectory(dir, "cancel"),
  reclaim: LuaScript.fromDirectory(dir, "reclaim"),
  pause: LuaScript.fromDirectory(dir, "pause"),
  clear: LuaScript.fromDirectory(dir, "clear"),
  redrive: LuaScript.fromDirectory(dir, "redrive"),
  progress: LuaScript.fromDirectory(dir, "progress"),
  heartbeat: LuaScript.fromDirectory(dir, "heartbeat"),
  restoreLocks: LuaScript.fromDirectory(dir, "restore-locks"),
  release: LuaScript.fromDirectory(dir, "release"),
  reprioritize: LuaScript.fromDirectory(dir, "reprioritize"),
  purgeCompleted: LuaScript.fromDirectory(dir, "purge-completed"),
  alertLock: LuaScript.fromDirectory(dir, "alert-lock"),
  forgetConsumer: LuaScript.fromDirectory(dir, "forget-consumer"),
} as const;
