/**
 * The seeded fuzz runs' randomness: one seed per run, printed with the run (in the describe name)
 * and replayed with `RT_FUZZ_SEED=<seed> npx vitest run <file>`.
 */

/** A small seeded generator, so a failing run can be replayed. */
export const prng = (seed: number) => () => {
  seed = (seed * 1_103_515_245 + 12_345) & 0x7fffffff;
  return seed / 0x7fffffff;
};

/** `RT_FUZZ_SEED` when set (an integer), else one taken from the clock. */
export const fuzzSeed = (): number => {
  const given = process.env.RT_FUZZ_SEED;
  if (given === undefined || given === "") return Date.now() % 1_000_000;
  const seed = Number(given);
  if (!Number.isSafeInteger(seed))
    throw new Error(`RT_FUZZ_SEED must be an integer, got ${JSON.stringify(given)}`);
  return seed;
};
