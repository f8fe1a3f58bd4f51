import type { AlertNotice } from "./book.js";

export interface WebhookOptions {
  readonly url: string;
  /** Who sends, and for which queue: part of every body. */
  readonly source: string;
  readonly queue: string;
  readonly timeoutMs?: number;
  /** Notices kept while the hook is away; past it the oldest are dropped (and counted). */
  readonly maxPending?: number;
}

export type DeliveryOutcome =
  | { readonly outcome: "idle" }
  | { readonly outcome: "sent" }
  | { readonly outcome: "refused"; readonly status: number }
  | { readonly outcome: "failed"; readonly reason: string };

/**
 * Carries alert notices to ALERT_WEBHOOK_URL as JSON, one POST each, in order. A notice is
 * retried until the hook takes it (the caller waits with backoff between tries), so a hook that
 * was down for a while receives what it missed; one that refuses a body outright (a 4xx other
 * than 408 or 429) would refuse it again, so that notice is dropped. Nothing here blocks the
 * evaluation: `offer` only queues.
 */
export class AlertWebhook {
  private readonly pending: AlertNotice[] = [];
  private droppedCount = 0;

  constructor(private readonly options: WebhookOptions) {}

  offer(notice: AlertNotice): void {
    this.pending.push(notice);
    const max = this.options.maxPending ?? 1_000;
    if (this.pending.length > max)
      this.droppedCount += this.pending.splice(0, this.pending.length - max).length;
  }

  get waiting(): number {
    return this.pending.length;
  }

  /** Notices dropped because too many waited. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Tries the oldest waiting notice once. */
  async deliverNext(): Promise<DeliveryOutcome> {
    const notice = this.pending[0];
    if (!notice) return { outcome: "idle" };
    const body = JSON.stringify({
      source: this.options.source,
      queue: this.options.queue,
      alert: {
        state: notice.state,
        rule: notice.rule,
        key: notice.key,
        severity: notice.severity,
        message: notice.message,
        since: new Date(notice.since).toISOString(),
        at: new Date(notice.at).toISOString(),
      },
    });
    let status: number;
    try {
      const response = await fetch(this.options.url, {
        method: "POST",
        headers: { "content-type": "application/json", "user-agent": "ratatoskr-alerts" },
        body,
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 5_000),
      });
      await response.body?.cancel();
      status = response.status;
    } catch (error) {
      return { outcome: "failed", reason: (error as Error).message };
    }
    if (status >= 200 && status < 300) {
      this.pending.shift();
      return { outcome: "sent" };
    }
    if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
      this.pending.shift();
      return { outcome: "refused", status };
    }
    return { outcome: "failed", reason: `answered ${status}` };
  }
}

/** Wait before the next try after `failures` failed ones in a row: 1 s doubling to 60 s. */
export const webhookBackoffMs = (failures: number): number =>
  Math.min(60_000, 1_000 * 2 ** Math.max(0, failures - 1));
