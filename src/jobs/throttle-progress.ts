import type { Progress } from "./definition.js";

/** Progress reaches its stores at most this often per job (the last one always). */
export const PROGRESS_EVERY_MS = 250;

/**
 * Wraps a progress writer so a chatty job costs at most one write per interval, and the latest
 * report is never dropped: it is written when the interval ends, or at `flush()`.
 */
export const throttleProgress = (write: (progress: Progress) => void, everyMs = PROGRESS_EVERY_MS) => {
  let last = 0;
  let pending: Progress | undefined;
  let timer: NodeJS.Timeout | undefined;
  const send = () => {
    timer = undefined;
    const progress = pending;
    pending = undefined;
    if (!progress) return;
    last = Date.now();
    write(progress);
  };
  const report = (progress: Progress) => {
    pending = progress;
    const wait = everyMs - (Date.now() - last);
    if (wait <= 0) send();
    else timer ??= setTimeout(send, wait);
  };
  report.flush = () => {
    clearTimeout(timer);
    send();
  };
  return report;
};
