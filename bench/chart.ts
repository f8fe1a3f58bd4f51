/**
 * The chart of a run: an SVG drawn by hand (no chart library for one picture), rasterised to PNG
 * with sharp. Bars are medians; the thin line across each bar's end spans min to max.
 */
import sharp from "sharp";
import { formatNumber, type Row, type Spread } from "./report.js";

const WIDTH = 1200;
const OURS = "#2b6cb0";
const THEIRS = "#dd6b20";
const INK = "#1a202c";
const GRID = "#e2e8f0";
const FONT = "DejaVu Sans, Arial, sans-serif";

const escape = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

const text = (x: number, y: number, content: string, attrs = "") => {
  const size = attrs.includes("font-size") ? "" : 'font-size="13"';
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" font-family="${FONT}" fill="${INK}" ${size} ${attrs}>${escape(content)}</text>`;
};

const rect = (x: number, y: number, w: number, h: number, fill: string) =>
  `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(0, w).toFixed(1)}" height="${h.toFixed(1)}" fill="${fill}"/>`;

const line = (x1: number, y1: number, x2: number, y2: number, stroke: string, width = 1) =>
  `<line x1="${x1.toFixed(1)}" y1="${y1.toFixed(1)}" x2="${x2.toFixed(1)}" y2="${y2.toFixed(1)}" stroke="${stroke}" stroke-width="${width}"/>`;

interface Pair {
  readonly label: string;
  readonly ours: Spread;
  readonly theirs: Spread;
  readonly unit: string;
  readonly note: string;
}

const pairsOf = (rows: readonly Row[], keep: (row: Row) => boolean): Pair[] =>
  rows
    .filter((r) => r.theirName === "BullMQ" && r.ours && r.theirs && keep(r))
    .map((r) => ({
      label: r.metric === "throughput" ? r.case : `${r.case} · ${r.metric}`,
      ours: r.ours!,
      theirs: r.theirs!,
      unit: r.unit,
      note: `${r.ratio!.toFixed(2)}x`,
    }));

/**
 * Horizontal bar pairs, each pair scaled to its own larger median (figures of different cases
 * differ by orders of magnitude), with the real values written at the bars' ends.
 */
const pairPanel = (top: number, title: string, pairs: readonly Pair[]) => {
  const labelWidth = 330;
  const barLeft = labelWidth + 10;
  const barWidth = 640;
  const rowHeight = 40;
  const parts = [text(20, top + 18, title, 'font-size="16" font-weight="bold"')];
  pairs.forEach((pair, i) => {
    const y = top + 34 + i * rowHeight;
    const scale = barWidth / Math.max(pair.ours.median, pair.theirs.median, pair.ours.max, pair.theirs.max);
    parts.push(text(labelWidth, y + 20, pair.label, 'text-anchor="end"'));
    for (const [k, side, color] of [
      [0, pair.ours, OURS],
      [1, pair.theirs, THEIRS],
    ] as const) {
      const barY = y + 3 + k * 17;
      parts.push(rect(barLeft, barY, side.median * scale, 14, color));
      parts.push(line(barLeft + side.min * scale, barY + 7, barLeft + side.max * scale, barY + 7, INK));
      parts.push(
        text(
          barLeft + side.max * scale + 6,
          barY + 12,
          `${formatNumber(side.median)} ${pair.unit}`,
          'font-size="11"',
        ),
      );
    }
    parts.push(text(WIDTH - 30, y + 20, pair.note, 'text-anchor="end" font-weight="bold"'));
    parts.push(line(20, y + rowHeight - 2, WIDTH - 20, y + rowHeight - 2, GRID));
  });
  return { svg: parts.join("\n"), height: 44 + pairs.length * rowHeight };
};

/** Latency percentiles as vertical bar pairs on a log scale (p99 can be 100× p50). */
const latencyPanel = (top: number, rows: readonly Row[]) => {
  const bars = rows.filter(
    (r) => r.case.startsWith("latency-") && r.theirName === "BullMQ" && r.ours && r.theirs,
  );
  const height = 330;
  if (bars.length === 0) return { svg: "", height: 0 };
  const values = bars.flatMap((r) => [r.ours!.median, r.theirs!.median]).filter((v) => v > 0);
  const low = 10 ** Math.floor(Math.log10(Math.min(...values)));
  const high = 10 ** Math.ceil(Math.log10(Math.max(...values)));
  const plotTop = top + 40;
  const plotBottom = top + height - 60;
  const left = 90;
  const right = WIDTH - 30;
  const y = (v: number) =>
    plotBottom -
    ((Math.log10(Math.max(v, low)) - Math.log10(low)) / Math.log10(high / low)) * (plotBottom - plotTop);
  const parts = [
    text(
      20,
      top + 18,
      "Latency, ms (log scale, medians; lower is better)",
      'font-size="16" font-weight="bold"',
    ),
  ];
  for (let v = low; v <= high; v *= 10) {
    parts.push(line(left, y(v), right, y(v), GRID));
    parts.push(
      text(
        left - 8,
        y(v) + 4,
        v >= 1 ? v.toLocaleString("en-US") : `${v}`,
        'text-anchor="end" font-size="11"',
      ),
    );
  }
  // Groups: one per case and kind (start, completion), three percentiles in each.
  const groups = new Map<string, Row[]>();
  for (const r of bars) {
    const kind = r.metric.startsWith("enqueue→start") ? "enqueue→start" : "enqueue→completion";
    const name = `${r.case.replace("latency-", "")}/s ${kind}`;
    groups.set(name, [...(groups.get(name) ?? []), r]);
  }
  const groupWidth = (right - left) / groups.size;
  [...groups.entries()].forEach(([name, members], g) => {
    const groupLeft = left + g * groupWidth;
    const slot = (groupWidth - 30) / members.length;
    members.forEach((r, m) => {
      const x = groupLeft + 15 + m * slot;
      const barWidth = (slot - 10) / 2;
      for (const [k, side, color] of [
        [0, r.ours!, OURS],
        [1, r.theirs!, THEIRS],
      ] as const) {
        const barX = x + k * barWidth;
        parts.push(rect(barX, y(side.median), barWidth - 2, plotBottom - y(side.median), color));
        parts.push(line(barX + barWidth / 2 - 1, y(side.min), barX + barWidth / 2 - 1, y(side.max), INK));
      }
      parts.push(
        text(
          x + slot / 2 - 5,
          plotBottom + 16,
          r.metric.replace(/.* /, ""),
          'text-anchor="middle" font-size="11"',
        ),
      );
    });
    parts.push(text(groupLeft + groupWidth / 2, plotBottom + 36, name, 'text-anchor="middle"'));
  });
  parts.push(line(left, plotBottom, right, plotBottom, INK));
  return { svg: parts.join("\n"), height };
};

export interface ChartInfo {
  readonly title: string;
  readonly subtitle: string;
}

export const chartSvg = (rows: readonly Row[], info: ChartInfo): string => {
  const panels: string[] = [];
  let y = 96;
  const add = (panel: { svg: string; height: number }) => {
    if (panel.height === 0) return;
    panels.push(panel.svg);
    y += panel.height + 20;
  };
  const throughput = pairsOf(rows, (r) => r.unit === "jobs/s");
  if (throughput.length > 0) {
    add(
      pairPanel(y, "Throughput, jobs/s (higher is better; each pair scaled to its larger bar)", throughput),
    );
  }
  add(latencyPanel(y, rows));
  const lower = pairsOf(rows, (r) => r.better === "lower" && !r.case.startsWith("latency-"));
  if (lower.length > 0) {
    add(pairPanel(y, "Memory and time (lower is better; each pair scaled to its larger bar)", lower));
  }
  const legend = [
    rect(WIDTH - 220, 20, 14, 14, OURS),
    text(WIDTH - 200, 32, "Ratatoskr"),
    rect(WIDTH - 110, 20, 14, 14, THEIRS),
    text(WIDTH - 90, 32, "BullMQ"),
    text(
      20,
      74,
      "Bars: medians over the rounds · thin lines: min–max · right column: ours / BullMQ",
      'font-size="12"',
    ),
  ];
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${y}" viewBox="0 0 ${WIDTH} ${y}">`,
    rect(0, 0, WIDTH, y, "#ffffff"),
    text(20, 32, info.title, 'font-size="20" font-weight="bold"'),
    text(20, 56, info.subtitle, 'font-size="12"'),
    ...legend,
    ...panels,
    "</svg>",
  ].join("\n");
};

export const writeChart = async (file: string, rows: readonly Row[], info: ChartInfo): Promise<void> => {
  await sharp(Buffer.from(chartSvg(rows, info)))
    .png()
    .toFile(file);
};
