import type { Figures } from "../harness.js";
import type { Options } from "../options.js";
import type { System, Target } from "../systems/system.js";

/** One figure a case reports, as a row of the table. */
export interface Metric {
  /** Its name in the Figures a run returns. */
  readonly key: string;
  readonly label: string;
  readonly unit: string;
  readonly better: "higher" | "lower";
}

/** The issue's targets: a ratio to BullMQ, or to another case of ours (priorities' cost). */
export type Goal =
  | {
      readonly kind: "vs-bullmq";
      readonly metric: string;
      readonly atLeast?: number;
      readonly atMost?: number;
    }
  | {
      /** Ours against ours: `metric` over `baseline`, another metric of the same case's runs. */
      readonly kind: "vs-ours";
      readonly metric: string;
      readonly baseline: string;
      /** What the baseline is, for the goal's text. */
      readonly baselineText: string;
      readonly atLeast: number;
    };

/** What a run of a compared case may need of the harness beyond its system. */
export interface RunContext {
  /** 1, 2, …: a case that runs two things in a round alternates which goes first by it. */
  readonly round: number;
  /** Empties Redis and collects this process's heap, as before every run: for a second drain. */
  readonly fresh: () => Promise<void>;
}

/** Run for both systems each round, alternating which goes first. */
export interface ComparedCase {
  readonly kind: "compared";
  readonly name: string;
  /** One line for --list. */
  readonly what: string;
  /** Left out of --quick unless named in --cases. */
  readonly fullOnly?: boolean;
  /**
   * Ours runs its jobs in the runtime's worker threads: their code is built before the first
   * case that does (`prepareThreadCode`), as an install does, so no round times that build.
   */
  readonly threadCode?: boolean;
  readonly metrics: readonly Metric[];
  readonly goals?: readonly Goal[];
  run(system: System, options: Options, context: RunContext): Promise<Figures>;
}

/** Another system alone, shown next to one of our figures for scale (python-rq). */
export interface ReferenceCase {
  readonly kind: "reference";
  readonly name: string;
  readonly what: string;
  readonly fullOnly?: boolean;
  /** Why it cannot run on this machine, or undefined if it can. */
  unavailable(): string | undefined;
  /** Its figures, each shown against `ours` (a metric of another case of this run). */
  readonly metrics: ReadonlyArray<
    Metric & { readonly ours: { readonly case: string; readonly key: string } }
  >;
  /** What its column is called in the table, per metric key. */
  readonly theirName: string;
  run(target: Target, options: Options): Promise<Figures>;
}

export type Case = ComparedCase | ReferenceCase;

export const JOBS_PER_SECOND: Metric = {
  key: "jobsPerSecond",
  label: "throughput",
  unit: "jobs/s",
  better: "higher",
};
