import { UsageError } from "../options.js";
import type { Case } from "./case.js";
import { drainCases } from "./drain.js";
import { enqueueCases } from "./enqueue.js";
import { latency2000, latency500, latencyFloorCase } from "./latency.js";
import { memoryCase } from "./memory.js";
import { recoveryCase } from "./recovery.js";
import { rqCase } from "./rq.js";

/** Every case, in the order they run and print. */
export const CASES: readonly Case[] = [
  ...enqueueCases,
  ...drainCases,
  latency500,
  latencyFloorCase,
  latency2000,
  memoryCase,
  recoveryCase,
  rqCase,
];

/**
 * The cases --cases names: a case's exact name picks that case, anything else every case whose
 * name starts with it (`drain-main`), less the full-run-only ones under --quick. Without
 * --cases, every case (the same exception). A pattern that matches nothing is an error.
 */
export const selectCases = (patterns: readonly string[], quick: boolean): Case[] => {
  const byDefault = (c: Case) => !(quick && c.fullOnly);
  if (patterns.length === 0) return CASES.filter(byDefault);
  const picked = new Set<Case>();
  for (const pattern of patterns) {
    const exact = CASES.find((c) => c.name === pattern);
    const matches = exact ? [exact] : CASES.filter((c) => c.name.startsWith(pattern) && byDefault(c));
    if (matches.length === 0)
      throw new UsageError(`--cases: no case is called ${pattern} or starts with it (see --list)`);
    for (const c of matches) picked.add(c);
  }
  return CASES.filter((c) => picked.has(c));
};
