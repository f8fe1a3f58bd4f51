import { type MessagePort, threadId, workerData } from "node:worker_threads";
import { LazyAbort } from "../jobs/lazy-abort.js";
import { mapBundleStacks } from "./bundle-stacks.js";
import type { ThreadHosting } from "./hosted-thread.js";
import { type JobLines, loadRegistry, runJob } from "./job-runner.js";
import type { FromThread, ServeTask, ThreadOutcome, ToThread } from "./protocol.js";

// The bundle's entry (thread-bundle.ts) preloads its registry through this module.
export { preloadRegistry } from "./job-runner.js";

// In a bundle's thread (thread-entry.js), before any job can throw.
const bundle = (workerData as { ratatoskrBundle?: unknown } | null)?.ratatoskrBundle;
if (typeof bundle === "string") mapBundleStacks(bundle);

/** A sent job's lines go back over the thread's port, named by the job's number. */
const portLines = (port: MessagePort): JobLines => ({
  progress: ({ seq }, progress) => port.postMessage({ type: "progress", seq, progress } satisfies FromThread),
  log: ({ seq }, level, message) =>
    port.postMessage({ type: "log", seq, level, message: String(message) } satisfies FromThread),
});

/**
 * This thread's one Piscina task, for as long as the pool lives: runs the jobs that arrive on
 * its port, all at once, and answers with their outcomes, batched per tick. With RT_CLAIM_IN=
 * threads it also claims for the worker groups it is asked to host (hosted-thread.ts, loaded
 * only then).
 */
export const serve = async ({ registry, port, hosting: willHost }: ServeTask): Promise<void> => {
  const running = new Map<number, LazyAbort>();
  const lines = portLines(port);
  let hosting: Promise<ThreadHosting> | undefined;
  const host = () =>
    (hosting ??= import("./hosted-thread.js").then(({ ThreadHosting }) => new ThreadHosting(registry, port)));
  let outcomes: Array<{ seq: number; outcome: ThreadOutcome }> = [];
  const answer = (seq: number, outcome: ThreadOutcome) => {
    if (outcomes.length === 0) {
      setImmediate(() => {
        const batch = outcomes;
        outcomes = [];
        port.postMessage({ type: "outcomes", outcomes: batch } satisfies FromThread);
      });
    }
    outcomes.push({ seq, outcome });
  };
  port.postMessage({ type: "ready", threadId } satisfies FromThread);
  // Loaded before the first job arrives, so the first jobs do not wait on it.
  void loadRegistry(registry).catch(() => {
    // Each job reports the failure when it needs the registry.
  });
  // So is the code that claims, when the groups will claim here (its failure is reported then).
  if (willHost) host().catch(() => {});
  await new Promise<void>((closed) => {
    port.on("message", (message: ToThread) => {
      switch (message.type) {
        case "run":
          for (const request of message.jobs) {
            const abort = new LazyAbort();
            running.set(request.seq, abort);
            void runJob(registry, request, abort, lines).then((outcome) => {
              running.delete(request.seq);
              answer(request.seq, outcome);
            });
          }
          return;
        case "abort": {
          const abort = running.get(message.seq);
          if (abort) LazyAbort.abort(abort, new Error(message.reason));
          return;
        }
        case "close":
          // Hosted groups were unhosted before the pool closes; any left stop at once.
          void (hosting?.then((h) => h.close()) ?? Promise.resolve())
            .catch(() => {})
            .finally(() => {
              port.close();
              closed();
            });
          return;
        default: {
          // In order: each waits on the same promise, so they run as they arrived.
          host().then(
            (h) => h.hear(message),
            (error: unknown) => {
              const reason = error instanceof Error ? error.message : String(error);
              if (message.type === "host")
                port.postMessage({
                  type: "host-failed",
                  group: message.spec.group,
                  reason,
                } satisfies FromThread);
              // Nothing is hosted here: nothing to stop.
              if (message.type === "unhost")
                port.postMessage({
                  type: "unhosted",
                  group: message.group,
                  abandoned: 0,
                } satisfies FromThread);
            },
          );
        }
      }
    });
  });
};
