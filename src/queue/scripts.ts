import { LuaLibrary } from "../redis/lua-library.js";

/** One script per state transition, by its file; reading them is reading the queue's state machine. */
export const SCRIPT_FILES = {
  enqueue: "enqueue",
  enqueueHandoff: "enqueue-handoff",
  claim: "claim",
  renew: "renew",
  complete: "complete",
  fail: "fail",
  promote: "promote",
  cancel: "cancel",
  reclaim: "reclaim",
  pause: "pause",
  clear: "clear",
  redrive: "redrive",
  progress: "progress",
  heartbeat: "heartbeat",
  restoreLocks: "restore-locks",
  release: "release",
  reprioritize: "reprioritize",
  purgeCompleted: "purge-completed",
  alertLock: "alert-lock",
  forgetConsumer: "forget-consumer",
  wake: "wake",
} as const;

export const library = LuaLibrary.fromDirectory(new URL("./lua/", import.meta.url), SCRIPT_FILES);

export const scripts = library.scripts;
