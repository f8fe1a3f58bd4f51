import type { TemplatedApp } from "uWebSockets.js";
import { type DashboardSnapshot, dashboardSnapshot } from "./dashboard-data.js";
import { frame } from "./progress-hub.js";

export const DASHBOARD_TOPIC = "dashboard";

/**
 * The dashboard's live numbers: while any admin socket watches, a snapshot every `everyMs` is
 * published to them all (one query round for every watcher, not one each).
 */
export class DashboardFeed {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly app: TemplatedApp,
    private readonly deps: Parameters<typeof dashboardSnapshot>[0],
    private readonly everyMs = 2_000,
  ) {}

  snapshot(): Promise<DashboardSnapshot> {
    return dashboardSnapshot(this.deps);
  }

  start(): void {
    this.timer = setInterval(() => void this.push(), this.everyMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async push() {
    if (this.busy || this.app.numSubscribers(DASHBOARD_TOPIC) === 0) return;
    this.busy = true;
    try {
      this.app.publish(DASHBOARD_TOPIC, frame("dashboard", await this.snapshot()));
    } catch {
      // The database away for a moment: the next tick tries again.
    } finally {
      this.busy = false;
    }
  }
}
