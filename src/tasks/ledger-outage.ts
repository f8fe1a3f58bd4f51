const MIN_MS = 1_000;
const MAX_MS = 30_000;

/**
 * A dispatcher's view of its task ledger being unreachable, and how long a job that could not
 * start because of it waits before it is tried again: as long as the ledger has been away so
 * far, from 1 s to 30 s, ±20 % so that jobs postponed together do not all come back together.
 * A short outage costs short waits; a long one does not send every waiting job round every
 * second.
 */
export class LedgerOutage {
  private since: number | undefined;
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
    this.postponed++;
    const base = Math.min(MAX_MS, Math.max(MIN_MS, now - this.since));
    return { delayMs: Math.round(base * (0.8 + 0.4 * this.random())), began };
  }

  /** A ledger call answered: the outage that was on, if any, is over. */
  answered(): { readonly lastedMs: number; readonly postponed: number } | undefined {
    if (this.since === undefined) return undefined;
    const over = { lastedMs: this.now() - this.since, postponed: this.postponed };
    this.since = undefined;
    this.postponed = 0;
    return over;
  }
}
