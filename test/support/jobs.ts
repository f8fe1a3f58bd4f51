import { appendFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { threadId } from "node:worker_threads";
import {
  // In a thread bundle this statement becomes one line (barrel-imports.ts) and its others stay
  // as many: the stack of `whereami` below must still name its own line.
  Schema,
} from "effect";
import { defineRegistry } from "../../src/jobs/definition.js";
import { JobFailure } from "../../src/queue/failures.js";

/**
 * Job kinds for the runtime's tests, loaded by real worker threads. Where a test must see what
 * happened inside a thread, the kind appends a line to the file named by RT_TEST_LOG.
 */
const note = (line: string) => {
  const file = process.env.RT_TEST_LOG;
  if (file) appendFileSync(file, `${line}\n`);
};

const abortable = (ms: number, signal: AbortSignal) => sleep(ms, undefined, { signal });

export default defineRegistry<{ id: string }>({
  kinds: {
    echo: {
      schema: Schema.Struct({ text: Schema.String }),
      handler: async ({ text }) => ({ echoed: text }),
    },
    sleep: {
      schema: Schema.Struct({
        ms: Schema.Number,
        steps: Schema.optional(Schema.Number),
        /** How long later attempts take (a job that hung in a dead worker runs fast elsewhere). */
        retryMs: Schema.optional(Schema.Number),
      }),
      handler: async ({ ms, steps = 1, retryMs }, { signal, progress, job }) => {
        const total = job.attempt > 1 && retryMs !== undefined ? retryMs : ms;
        for (let i = 1; i <= steps; i++) {
          await abortable(total / steps, signal);
          progress({ percent: Math.round((100 * i) / steps), step: `step ${i} of ${steps}` });
        }
        note(`ran ${job.id} ${job.attempt} ${process.pid}`);
        return "slept";
      },
    },
    /** Reads its signal only after `ms`: an abort that came first must show on it. */
    lateSignal: {
      schema: Schema.Struct({ ms: Schema.Number }),
      handler: async ({ ms }, context) => {
        await sleep(ms);
        const { signal } = context;
        return signal.aborted ? `aborted: ${(signal.reason as Error).message}` : "not aborted";
      },
    },
    /** Uses a copy of its context, as a handler may: every part of it must have come along. */
    copied: {
      schema: Schema.Struct({}),
      handler: async (_, context) => {
        const { progress, ...rest } = context;
        const copy = { ...rest };
        progress({ percent: 50, step: "from a destructured reporter" });
        // A JavaScript caller may log any value; it arrives as text.
        copy.log("info", 42 as unknown as string);
        return { signal: copy.signal instanceof AbortSignal && !copy.signal.aborted, id: copy.job.id };
      },
    },
    ignoreAbort: {
      schema: Schema.Struct({ ms: Schema.Number }),
      handler: async ({ ms }) => {
        await sleep(ms);
        return "finished anyway";
      },
    },
    /** Which worker thread ran it, after holding that thread's event loop for `holdMs` (default none). */
    thread: {
      schema: Schema.Struct({ holdMs: Schema.optional(Schema.Number) }),
      handler: async ({ holdMs = 0 }) => {
        const until = Date.now() + holdMs;
        while (Date.now() < until);
        return String(threadId);
      },
    },
    /** Holds its thread's event loop for `ms`: nothing else in the thread runs meanwhile. */
    spin: {
      schema: Schema.Struct({ ms: Schema.Number }),
      handler: async ({ ms }) => {
        const until = Date.now() + ms;
        while (Date.now() < until);
        return "spun";
      },
    },
    exit: {
      schema: Schema.Struct({}),
      handler: async (_, { job }) => {
        // Crash the thread on the first attempt only, so the retry can succeed.
        if (job.runAttempt === 1) process.exit(3);
        return "survived";
      },
    },
    hog: {
      schema: Schema.Struct({}),
      handler: async (_, { job }) => {
        if (job.runAttempt > 1) return "fits now";
        const hoard: number[][] = [];
        for (;;) hoard.push(new Array(1_000_000).fill(job.attempt));
      },
    },
    /** Where this module finds itself, as a bundle must keep it (thread-bundle.ts). */
    whereami: {
      schema: Schema.Struct({}),
      handler: async () => ({
        url: import.meta.url,
        filename: import.meta.filename,
        dirname: import.meta.dirname,
        stack: new Error("here").stack?.split("\n")[1]?.trim(),
        // Whether this thread can import TypeScript at run time: through tsx, yes; a bundle's
        // thread has no loader for it (the specifier is not a literal, so it is not bundled).
        typescript: await import(String(new URL("./empty-jobs.ts", import.meta.url))).then(
          () => true,
          () => false,
        ),
      }),
    },
    fail: {
      schema: Schema.Struct({ kind: Schema.Literal("transient", "unavailable", "invalid", "exhausted") }),
      handler: async ({ kind }) => {
        throw new JobFailure(kind, `asked to fail (${kind})`);
      },
    },
  },
  scope: {
    open: async (job) => {
      note(`open ${job.id}`);
      return { id: job.id };
    },
    close: async (resources, { ok }) => {
      note(`close ${resources.id} ${ok ? "ok" : "failed"}`);
    },
  },
});
