import { errorCodes, UNREACHABLE_CODES } from "../captions/network-errors.js";

const MIN_MS = 1_000;
const MAX_MS = 30_000;
/**
 * How long without a failure before an outage counts as over: a restarted database's pool still
 * hands out a few dead connections, each failing once, between good ones.
 */
const QUIET_MS = 1_000;

/**
 * A dispatcher's view of its task ledger being unreachable, and how long a job that could not
 * start because of it waits before it is tried again: as long as the ledger has been away so
 * far, from 1 s to 30 s, then ±20 % (0.8-36 s) so that jobs postponed together do not all come
 * back together. A short outage costs short waits; a long one does not send every waiting job
 * round every second.
 */
export class LedgerOutage {
  private since: number | undefined;
  private lastFailure = 0;
  private postponed = 0;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly random: () => number = Math.random,
  ) {}

  /** A ledger call failed: how long to postpone the job, and whether this began an outage. */
  failed(): { readonly delayMs: number; readonly began: boolean } {
    const now = this.now();
    const began = this.since === undefined;
    this.since ??= now;
    this.lastFailure = now;
    this.postponed++;
    const base = Math.min(MAX_MS, Math.max(MIN_MS, now - this.since));
    return { delayMs: Math.round(base * (0.8 + 0.4 * this.random())), began };
  }

  /**
   * A ledger call that began at `startedAt` answered. The outage that was on, if any, is over
   * once a call that began after its last failure answers, a second or more after that failure;
   * a call that found a connection earlier says nothing of the connections since. `lastedMs` is
   * from its first failure to its last.
   */
  answered(startedAt: number): { readonly lastedMs: number; readonly postponed: number } | undefined {
    if (this.since === undefined) return undefined;
    if (startedAt <= this.lastFailure || this.now() - this.lastFailure < QUIET_MS) return undefined;
    const over = { lastedMs: this.lastFailure - this.since, postponed: this.postponed };
    this.since = undefined;
    this.postponed = 0;
    return over;
  }
}

/** Socket-level codes: the database is not there (as for any peer), or the connection broke. */
const CONNECTION_CODES = new Set([...UNREACHABLE_CODES, "ECONNRESET", "ETIMEDOUT", "EPIPE"]);

/**
 * PostgreSQL's SQLSTATEs for the same: class 08 (connection exception), 53300 (too many
 * connections), 57P01-57P03 (the server is shutting down, crashed, or not yet accepting).
 */
const isUnreachableState = (state: string) =>
  state.startsWith("08") || state === "53300" || /^57P0[1-3]$/.test(state);

/** What the drivers and the pool say, without a code, when a connection broke or never came. */
const UNREACHABLE_MESSAGE =
  /Connection terminated|Connection ended unexpectedly|Timeout acquiring a connection|Client has encountered a connection error/i;

const chain = (error: unknown): unknown[] => {
  const seen: unknown[] = [];
  for (
    let e = error;
    e !== undefined && e !== null && seen.length < 6;
    e = (e as { cause?: unknown }).cause
  ) {
    seen.push(e);
    if (typeof e !== "object") break;
  }
  return seen;
};

/**
 * Whether an error of a ledger call says the database cannot be reached (refused, gone, restarting,
 * out of connections), rather than something about this task or this statement. Only the
 * former postpones a job: anything else fails it as before, so a fault tied to one row cannot
 * keep its job going round for ever.
 */
export const isLedgerUnreachable = (error: unknown): boolean => {
  for (const code of errorCodes(error)) {
    if (CONNECTION_CODES.has(code) || isUnreachableState(code)) return true;
  }
  return chain(error).some((e) => {
    if (typeof e !== "object" || e === null) return false;
    const { name, message, sqlState } = e as { name?: unknown; message?: unknown; sqlState?: unknown };
    return (
      name === "ConnectionException" ||
      name === "KnexTimeoutError" ||
      (typeof sqlState === "string" && isUnreachableState(sqlState)) ||
      (typeof message === "string" && UNREACHABLE_MESSAGE.test(message))
    );
  });
};
