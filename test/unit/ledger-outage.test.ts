import { describe, expect, it } from "vitest";
import { LedgerOutage } from "../../src/tasks/ledger-outage.js";

describe("LedgerOutage", () => {
  it("postpones for as long as the ledger has been away, from 1 s to 30 s, and says when an outage begins and ends", () => {
    let now = 1_000_000;
    const middle = () => 0.5; // no jitter
    const outage = new LedgerOutage(() => now, middle);
    expect(outage.answered()).toBeUndefined();
    expect(outage.failed()).toEqual({ delayMs: 1_000, began: true });
    now += 400;
    expect(outage.failed()).toEqual({ delayMs: 1_000, began: false });
    now += 4_600;
    expect(outage.failed()).toEqual({ delayMs: 5_000, began: false });
    now += 60_000;
    expect(outage.failed()).toEqual({ delayMs: 30_000, began: false });
    expect(outage.answered()).toEqual({ lastedMs: 65_000, postponed: 4 });
    expect(outage.answered()).toBeUndefined();
    // A new outage starts short again.
    expect(outage.failed()).toEqual({ delayMs: 1_000, began: true });
  });

  it("spreads the delays by up to 20 % either way", () => {
    const now = () => 0;
    expect(new LedgerOutage(now, () => 0).failed().delayMs).toBe(800);
    expect(new LedgerOutage(now, () => 0.999_999).failed().delayMs).toBe(1_200);
  });
});
