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

/** One label set's count, held by whoever counts it often (`CounterVec.at`). */
export interface Counter {
  inc(by?: number): void;
}

/** A counter per label set, kept in this process (Prometheus sums over processes). */
export class CounterVec {
  private readonly values = new Map<string, { labels: Labels; value: number; inc(by?: number): void }>();

  inc(labels: Labels, by = 1): void {
    this.at(labels).inc(by);
  }

  /** The label set's counter: counting through it skips finding the set each time. */
  at(labels: Labels): Counter {
    const key = JSON.stringify(labels);
    let entry = this.values.get(key);
    if (!entry) {
      entry = {
        labels,
        value: 0,
        inc(by = 1) {
          this.value += by;
        },
      };
      this.values.set(key, entry);
    }
    return entry;
  }

  samples(): Sample[] {
    return [...this.values.values()].map(({ labels, value }) => ({ labels, value }));
  }
}

/** One label set's histogram, held by whoever observes it often (`HistogramVec.at`). */
export interface Histogram {
  observe(value: number): void;
}

/**
 * One label set of a histogram. Each value is counted in the first bucket that holds it, and the
 * counts are summed into Prometheus's cumulative buckets only when scraped: an observation is
 * one comparison per bucket below it, not one per bucket.
 */
class HistogramEntry implements Histogram {
  /** Per bucket, the values that fell in it and no smaller one; the last: above every bound. */
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && !(value <= this.bounds[i]!)) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

/** A histogram per label set with fixed upper bounds (seconds). */
export class HistogramVec {
  private readonly values = new Map<string, HistogramEntry>();

  constructor(private readonly bounds: readonly number[]) {}

  observe(labels: Labels, value: number): void {
    this.at(labels).observe(value);
  }

  /** The label set's histogram: observing through it skips finding the set each time. */
  at(labels: Labels): Histogram {
    const key = JSON.stringify(labels);
    let entry = this.values.get(key);
    if (!entry) {
      entry = new HistogramEntry(labels, this.bounds);
      this.values.set(key, entry);
    }
    return entry;
  }

  samples(): Array<Sample & { suffix: string }> {
    return [...this.values.values()].flatMap(({ labels, counts, sum, count }) => {
      let below = 0;
      return [
        ...this.bounds.map((bound, i) => {
          below += counts[i]!;
          return { suffix: "_bucket", labels: { ...labels, le: String(bound) }, value: below };
        }),
        { suffix: "_bucket", labels: { ...labels, le: "+Inf" }, value: count },
        { suffix: "_sum", labels, value: sum },
        { suffix: "_count", labels, value: count },
      ];
    });
  }
}
