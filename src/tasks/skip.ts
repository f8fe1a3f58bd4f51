/**
 * A Redis job the ledger says not to run (it ended, or another queue runs it) is acknowledged
 * with this result: Redis then forgets it, and nothing records it as the task's result.
 */
export const skipResult = (reason: string): string => JSON.stringify({ skipped: reason });

export const isSkip = (result: string | undefined): boolean => result?.startsWith('{"skipped"') ?? false;
