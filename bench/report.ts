/**
 * From runs to the summary: median, min and max of each figure per side, the ratio ours/theirs,
 * and whether each of the goals is met. Also the terminal table (Markdown, so that the
 * README can take it as it is).
 */
import type { Case, Goal, Metric } from "./cases/case.js";
import { median, type Figures } from "./harness.js";

export type Side = "ratatoskr" | "bullmq" | "reference";

export interface Run {
  readonly case: string;
  readonly round: number;
  readonly side: Side;
  readonly figures: Figures;
}

export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

export interface GoalOutcome {
  readonly text: string;
  /** The figure the goal is about, when it differs from the row's ratio (vs-ours goals). */
  readonly value?: number;
  /** Undefined when the run lacks what the goal needs (e.g. the baseline case). */
  readonly met?: boolean;
}

export interface Row {
  readonly case: string;
  readonly metric: string;
  readonly key: string;
  readonly unit: string;
  readonly better: Metric["better"];
  /** What the `theirs` column holds: BullMQ, or the reference system (rq). */
  readonly theirName: string;
  readonly ours: Spread | undefined;
  readonly theirs: Spread | undefined;
  /** ours / theirs, medians. */
  readonly ratio: number | undefined;
  readonly goal: GoalOutcome | undefined;
}

const spread = (values: number[]): Spread | undefined =>
  values.length === 0
    ? undefined
    : { median: median(values), min: Math.min(...values), max: Math.max(...values) };

const spreadOf = (runs: readonly Run[], caseName: string, side: Side, key: string) =>
  spread(
    runs
      .filter((r) => r.case === caseName && r.side === side)
      .map((r) => r.figures[key])
      .filter((v): v is number => v !== undefined && Number.isFinite(v)),
  );

/** One row: ours against theirs for one metric, with the ratio of the medians. */
const rowOf = (
  c: Case,
  metric: Metric,
  theirName: string,
  ours: Spread | undefined,
  theirs: Spread | undefined,
  judge: (ratio: number | undefined) => GoalOutcome | undefined,
): Row => {
  const ratio = ours && theirs ? ours.median / theirs.median : undefined;
  return {
    case: c.name,
    metric: metric.label,
    key: metric.key,
    unit: metric.unit,
    better: metric.better,
    theirName,
    ours,
    theirs,
    ratio,
    goal: judge(ratio),
  };
};

/** Every row of the table, in case order, then metric order. */
export const summarise = (cases: readonly Case[], runs: readonly Run[]): Row[] => {
  const rows: Row[] = [];
  for (const c of cases) {
    if (c.kind === "reference") {
      if (!runs.some((r) => r.case === c.name)) continue;
      for (const metric of c.metrics) {
        const ours = spreadOf(runs, metric.ours.case, "ratatoskr", metric.ours.key);
        const theirs = spreadOf(runs, c.name, "reference", metric.key);
        rows.push(rowOf(c, metric, c.theirName, ours, theirs, () => undefined));
      }
      continue;
    }
    for (const metric of c.metrics) {
      const ours = spreadOf(runs, c.name, "ratatoskr", metric.key);
      const theirs = spreadOf(runs, c.name, "bullmq", metric.key);
      const goal = c.goals?.find((g) => g.metric === metric.key);
      rows.push(
        rowOf(c, metric, "BullMQ", ours, theirs, (ratio) =>
          goal === undefined ? undefined : judgeGoal(goal, runs, c.name, ratio),
        ),
      );
    }
  }
  return rows;
};

/**
 * Against BullMQ: the ratio of medians within the bound. Against ours: the median over the
 * case's runs of one of our metrics over another of the same run (priorities over one priority).
 */
const judgeGoal = (
  goal: Goal,
  runs: readonly Run[],
  caseName: string,
  ratio: number | undefined,
): GoalOutcome => {
  if (goal.kind === "vs-bullmq") {
    const text = goal.atLeast !== undefined ? `≥${goal.atLeast}x BullMQ` : `≤${goal.atMost}x BullMQ`;
    if (ratio === undefined) return { text };
    return {
      text,
      met: goal.atLeast !== undefined ? ratio >= goal.atLeast : ratio <= (goal.atMost ?? Infinity),
    };
  }
  const text = `≥${goal.atLeast}x ours, ${goal.baselineText}`;
  // Each run's two figures were measured at the same moment: the ratio is taken within a run,
  // where the machine's pace (which swings by more than the goal's margin between minutes)
  // weighs on both alike, and the median of those is the goal's figure.
  const paired = runs
    .filter((r) => r.case === caseName && r.side === "ratatoskr")
    .map((r) => (r.figures[goal.metric] ?? Number.NaN) / (r.figures[goal.baseline] ?? Number.NaN))
    .filter((v) => Number.isFinite(v));
  if (paired.length === 0) return { text: `${text} (not run)` };
  const value = median(paired);
  return { text, value, met: value >= goal.atLeast };
};

/** Thousands for big figures, two decimals for small ones, three significant digits between. */
export const formatNumber = (n: number): string => {
  if (!Number.isFinite(n)) return "—";
  const abs = Math.abs(n);
  if (abs >= 1000) return Math.round(n).toLocaleString("en-US");
  if (abs >= 100) return n.toFixed(0);
  if (abs >= 10) return n.toFixed(1);
  return n.toFixed(2);
};

const formatSpread = (s: Spread | undefined): string =>
  s === undefined ? "—" : `${formatNumber(s.median)} (${formatNumber(s.min)}–${formatNumber(s.max)})`;

const ratioCell = (row: Row): string => {
  if (row.ratio === undefined) return "—";
  return row.better === "lower" ? `${row.ratio.toFixed(2)} (lower is better)` : row.ratio.toFixed(2);
};

const goalCells = (row: Row): [string, string] => {
  if (row.goal === undefined) return ["—", "—"];
  const value = row.goal.value === undefined ? "" : `: ${row.goal.value.toFixed(2)}`;
  const met = row.goal.met === undefined ? "—" : row.goal.met ? "met" : "not met";
  return [`${row.goal.text}${value}`, met];
};

/** A Markdown table, its columns padded so that it also reads well in a terminal. */
export const renderTable = (rows: readonly Row[]): string => {
  // Reference rows (rq, the bare round trips) name what they hold in their own column's place.
  const others = [...new Set(rows.map((r) => r.theirName).filter((name) => name !== "BullMQ"))];
  const theirs = others.length > 0 ? `BullMQ (or ${others.join(", or ")}, in its rows)` : "BullMQ";
  const header = [
    "case",
    "metric",
    "ours median (min–max)",
    `${theirs} median (min–max)`,
    "unit",
    "ours/theirs",
    "goal",
    "met",
  ];
  const body = rows.map((r) => [
    r.case,
    r.metric,
    formatSpread(r.ours),
    formatSpread(r.theirs),
    r.unit,
    ratioCell(r),
    ...goalCells(r),
  ]);
  const table = [header, ...body];
  const widths = header.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  const line = (cells: string[]) => `| ${cells.map((cell, c) => cell.padEnd(widths[c]!)).join(" | ")} |`;
  const rule = `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`;
  return [line(header), rule, ...body.map(line)].join("\n");
};
