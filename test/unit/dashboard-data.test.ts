import { describe, expect, it } from "vitest";
import { percentile } from "../../src/web/dashboard-data.js";

describe("the dashboard's percentiles", () => {
  it("takes the nearest rank of the sorted values", () => {
    const values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect(percentile(values, 0.5)).toBe(5);
    expect(percentile(values, 0.95)).toBe(10);
    expect(percentile([7], 0.95)).toBe(7);
    expect(percentile([], 0.5)).toBeNull();
  });
});
