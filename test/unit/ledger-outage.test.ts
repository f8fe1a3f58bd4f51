import { describe, expect, it } from "vitest";
import { isLedgerUnreachable, LedgerOutage } from "../../src/tasks/ledger-outage.js";

describe("LedgerOutage", () => {
  it("postpones for as long as the ledger has been away, from 1 s to 30 s, and says when an outage begins and ends", () => {
    let now = 1_000_000;
    const middle = () => 0.5; // no jitter
    const outage = new LedgerOutage(() => now, middle);
    expect(outage.answered(now)).toBeUndefined();
    const began = now;
    expect(outage.failed()).toEqual({ delayMs: 1_000, began: true });
    now += 400;
    expect(outage.failed()).toEqual({ delayMs: 1_000, began: false });
    now += 4_600;
    expect(outage.failed()).toEqual({ delayMs: 5_000, began: false });
    now += 60_000;
    expect(outage.failed()).toEqual({ delayMs: 30_000, began: false });
    const lastFailure = now;
    now += 2_000;
    expect(outage.answered(lastFailure + 1)).toEqual({ lastedMs: lastFailure - began, postponed: 4 });
    expect(outage.answered(now)).toBeUndefined();
    // A new outage starts short again.
    expect(outage.failed()).toEqual({ delayMs: 1_000, began: true });
  });

  it("is not over for a call that began before its last failure, nor within a second of it", () => {
    let now = 5_000;
    const outage = new LedgerOutage(
      () => now,
      () => 0.5,
    );
    const before = now - 10;
    outage.failed();
    now += 300;
    // Began before the failure: it had its connection already.
    expect(outage.answered(before)).toBeUndefined();
    // Began after it, but a dead pooled connection may still fail within the second.
    expect(outage.answered(now - 100)).toBeUndefined();
    now += 200;
    outage.failed();
    now += 1_000;
    expect(outage.answered(now - 1)).toEqual({ lastedMs: 500, postponed: 2 });
  });

  it("spreads the delays by up to 20 % either way", () => {
    const now = () => 0;
    expect(new LedgerOutage(now, () => 0).failed().delayMs).toBe(800);
    expect(new LedgerOutage(now, () => 0.999_999).failed().delayMs).toBe(1_200);
  });
});

describe("isLedgerUnreachable", () => {
  const wrapped = (cause: unknown, name = "DriverException") =>
    Object.assign(new Error("wrapped", { cause }), { name });

  it("is true for a database that refuses, drops, restarts or has no connection to give", () => {
    // As MikroORM reports a refused connection: its DriverException carries the socket's code.
    expect(
      isLedgerUnreachable(
        Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" }),
      ),
    ).toBe(true);
    expect(
      isLedgerUnreachable(wrapped(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }))),
    ).toBe(true);
    expect(isLedgerUnreachable(Object.assign(new Error("terminating connection"), { code: "57P01" }))).toBe(
      true,
    );
    expect(isLedgerUnreachable(Object.assign(new Error("x"), { sqlState: "08006" }))).toBe(true);
    expect(isLedgerUnreachable(Object.assign(new Error("too many clients"), { code: "53300" }))).toBe(true);
    expect(isLedgerUnreachable(wrapped(new Error("Connection terminated unexpectedly")))).toBe(true);
    expect(
      isLedgerUnreachable(
        Object.assign(new Error("Knex: Timeout acquiring a connection."), { name: "KnexTimeoutError" }),
      ),
    ).toBe(true);
    expect(isLedgerUnreachable(wrapped(new Error("x"), "ConnectionException"))).toBe(true);
  });

  it("is false for anything about the statement or the row", () => {
    expect(isLedgerUnreachable(Object.assign(new Error("deadlock detected"), { code: "40P01" }))).toBe(false);
    expect(isLedgerUnreachable(Object.assign(new Error("value too long"), { code: "22001" }))).toBe(false);
    expect(isLedgerUnreachable(new TypeError("Cannot read properties of undefined"))).toBe(false);
    expect(isLedgerUnreachable("a string")).toBe(false);
    expect(isLedgerUnreachable(undefined)).toBe(false);
  });
});
