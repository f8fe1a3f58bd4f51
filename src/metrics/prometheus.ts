/** The Prometheus text format (version 0.0.4), the small part of it this project needs. */

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  readonly labels?: Labels;
  readonly value: number;
}

const escapeLabel = (value: string) =>
  value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

const labelText = (labels: Labels | undefined) => {
  const entries = Object.entries(labels ?? {});
  return entries.length === 0 ? "" : `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
};

const number = (n: number) => (Number.isFinite(n) ? String(n) : n > 0 ? "+Inf" : n < 0 ? "-Inf" : "NaN");

/** One metric family: HELP, TYPE, then its samples. */
export const family = (
  name: string,
  type: "counter" | "gauge" | "histogram",
  help: string,
  samples: readonly (Sample & { readonly suffix?: string })[],
): string =>
  [
    `# HELP ${name} ${help}`,
    `# TYPE ${name} ${type}`,
    ...samples.map((s) => `${name}${s.suffix ?? ""}${labelText(s.labels)} ${number(s.value)}`),
  ].join("\n");

/** A counter per label set, kept in this process (Prometheus sums over processes). */
export class CounterVec {
  private readonly values = new Map<string, { labels: Labels; value: number }>();

  inc(labels: Labels, by = 1): void {
    const key = JSON.stringify(labels);
    const entry = this.values.get(key) ?? { labels, value: 0 };
    entry.value += by;
    this.values.set(key, entry);
  }

  samples(): Sample[] {
    return [...this.values.values()].map(({ labels, value }) => ({ labels, value }));
  }
}

/** A histogram per label set with fixed upper bounds (seconds). */
export class HistogramVec {
  private readonly values = new Map<
    string,
    { labels: Labels; counts: number[]; sum: number; count: number }
  >();

  constructor(private readonly bounds: readonly number[]) {}

  observe(labels: Labels, value: number): void {
    this.observeAll(labels, [value]);
  }

  /** Many values of one label set: the set's key made once. */
  observeAll(labels: Labels, values: readonly number[]): void {
    const key = JSON.stringify(labels);
    const entry = this.values.get(key) ?? { labels, counts: this.bounds.map(() => 0), sum: 0, count: 0 };
    for (const value of values) {
      this.bounds.forEach((bound, i) => {
        if (value <= bound) entry.counts[i] = (entry.counts[i] ?? 0) + 1;
      });
      entry.sum += value;
      entry.count++;
    }
    this.values.set(key, entry);
  }

  samples(): Array<Sample & { suffix: string }> {
    return [...this.values.values()].flatMap(({ labels, counts, sum, count }) => [
      ...this.bounds.map((bound, i) => ({
        suffix: "_bucket",
        labels: { ...labels, le: String(bound) },
        value: counts[i] ?? 0,
      })),
      { suffix: "_bucket", labels: { ...labels, le: "+Inf" }, value: count },
      { suffix: "_sum", labels, value: sum },
      { suffix: "_count", labels, value: count },
    ]);
  }
}
