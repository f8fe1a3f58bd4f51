/** One task as the demo shows it. */
export interface TaskLine {
  readonly label: string;
  readonly priority: string;
  readonly status: string;
  readonly percent: number;
  readonly step: string;
}

const WIDTH = 24;

export const bar = (percent: number): string => {
  const filled = Math.round((Math.max(0, Math.min(100, percent)) / 100) * WIDTH);
  return `[${"#".repeat(filled)}${".".repeat(WIDTH - filled)}]`;
};

export const formatLine = (t: TaskLine): string =>
  `${t.label.padEnd(6)} ${t.priority.padEnd(6)} ${bar(t.percent)} ${String(t.percent).padStart(3)}%  ` +
  `${t.status.padEnd(9)} ${t.step}`.slice(0, 110);

/**
 * Progress bars in the terminal: redrawn in place on a TTY; elsewhere (a pipe, a CI log) one line
 * per change of a task's status or step, so the output stays readable as plain text.
 */
export class ProgressView {
  private drawn = 0;
  private readonly last = new Map<string, string>();

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly tty = out.isTTY === true,
  ) {}

  render(lines: readonly TaskLine[]): void {
    if (this.tty) {
      const text = lines.map((l) => `\x1b[2K${formatLine(l)}`).join("\n");
      this.out.write(`${this.drawn > 0 ? `\x1b[${this.drawn}A\r` : ""}${text}\n`);
      this.drawn = lines.length;
      return;
    }
    for (const l of lines) {
      const key = `${l.status}|${l.step}`;
      if (this.last.get(l.label) === key) continue;
      this.last.set(l.label, key);
      this.out.write(`${formatLine(l)}\n`);
    }
  }
}
