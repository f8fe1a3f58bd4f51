import type { Condition, Severity } from "./rules.js";

/** An alert that is firing: when its condition began, and when it was last announced. */
export interface ActiveAlert {
  readonly rule: string;
  readonly key: string;
  readonly severity: Severity;
  readonly message: string;
  /** When the condition was first seen (it fires once it held for the rule's `for`). */
  readonly since: number;
  /** When it fired; undefined while it is pending (holding, not yet for long enough). */
  readonly firedAt: number | undefined;
  readonly lastSentAt: number | undefined;
}

/** What an evaluation announces: an alert firing, repeating while it holds, or resolved. */
export interface AlertNotice {
  readonly state: "firing" | "repeat" | "resolved";
  readonly rule: string;
  readonly key: string;
  readonly severity: Severity;
  readonly message: string;
  readonly since: number;
  readonly at: number;
}

export interface BookOptions {
  /** How long a rule's condition must hold before it fires (default: at once). */
  readonly holdMs: (rule: string) => number;
  readonly repeatMs: number;
}

/**
 * The alert book: each condition fires once, repeats every `repeatMs` while it holds, and
 * resolves when it no longer holds. Its state is plain data, so the evaluator can keep it where
 * the next evaluator (another process, after a failover) finds it and does not fire again.
 */
export class AlertBook {
  private readonly active = new Map<string, ActiveAlert>();

  constructor(private readonly options: BookOptions) {}

  /** Replaces the state with what a previous evaluator left. */
  load(alerts: Iterable<ActiveAlert>): void {
    this.active.clear();
    for (const a of alerts) this.active.set(a.key, a);
  }

  alerts(): ActiveAlert[] {
    return [...this.active.values()];
  }

  /** Firing alerts (not the pending ones). */
  firing(): ActiveAlert[] {
    return this.alerts().filter((a) => a.firedAt !== undefined);
  }

  /** Applies one evaluation (every condition that holds now) and returns what to announce. */
  apply(conditions: readonly Condition[], at: number): AlertNotice[] {
    const notices: AlertNotice[] = [];
    const holding = new Set<string>();
    for (const c of conditions) {
      holding.add(c.key);
      const known = this.active.get(c.key);
      const since = known?.since ?? at;
      const due = at - since >= this.options.holdMs(c.rule);
      if (known?.firedAt === undefined) {
        const fired = due ? at : undefined;
        this.active.set(c.key, { ...c, since, firedAt: fired, lastSentAt: fired });
        if (fired !== undefined) notices.push({ ...c, state: "firing", since, at });
      } else if (at - (known.lastSentAt ?? known.firedAt) >= this.options.repeatMs) {
        this.active.set(c.key, { ...known, ...c, lastSentAt: at });
        notices.push({ ...c, state: "repeat", since, at });
      } else {
        // The message keeps its latest figures; the repeat clock does not move.
        this.active.set(c.key, { ...known, message: c.message, severity: c.severity });
      }
    }
    for (const [key, alert] of this.active) {
      if (holding.has(key)) continue;
      this.active.delete(key);
      if (alert.firedAt !== undefined) {
        notices.push({
          state: "resolved",
          rule: alert.rule,
          key,
          severity: alert.severity,
          message: `resolved: ${alert.message}`,
          since: alert.since,
          at,
        });
      }
    }
    return notices;
  }
}
