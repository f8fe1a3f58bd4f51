/**
 * What a failed fetch says about the network, shared by every HTTP peer of the caption job
 * (the instance's API, its media host, the model server) so they classify failures alike.
 */

/**
 * Every `code` on the error and its causes: undici wraps the socket error in
 * `TypeError("fetch failed")`, and for a host with several addresses (happy eyeballs) in an
 * AggregateError.
 */
export const errorCodes = (error: unknown, depth = 0): string[] => {
  if (depth > 5 || typeof error !== "object" || error === null) return [];
  const codes: string[] = [];
  const { code, cause } = error as { code?: unknown; cause?: unknown };
  if (typeof code === "string") codes.push(code);
  if (error instanceof AggregateError)
    for (const inner of error.errors) codes.push(...errorCodes(inner, depth + 1));
  codes.push(...errorCodes(cause, depth + 1));
  return codes;
};

/** "Nobody is there" (down, not listening, unknown name): worth minutes, not an immediate retry. */
export const UNREACHABLE_CODES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
]);

/** The first code that says the peer is unreachable, if any. */
export const unreachableCode = (error: unknown): string | undefined =>
  errorCodes(error).find((code) => UNREACHABLE_CODES.has(code));
