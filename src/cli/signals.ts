export const say = (line: string) => process.stderr.write(`${line}\n`);

/**
 * Runs until SIGTERM or SIGINT: the first stops gracefully (exit 0, or 1 if the stop fails), a
 * second exits at once (130). If the work gives up on its own (`done` reports a failure), exit 1
 * and let systemd or Kubernetes restart the process.
 */
export const untilSignalled = (options: {
  readonly stop: () => Promise<void>;
  readonly done: Promise<{ readonly failed: boolean; readonly reason: string | undefined }>;
  readonly shutdownMs: number;
}): Promise<number> =>
  new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        say(`${signal} again: exiting now, running jobs are left to the reclaimer`);
        resolve(130);
        return;
      }
      say(`${signal}: stopping; running jobs have ${options.shutdownMs} ms to finish (send again to force)`);
      options.stop().then(
        () => resolve(0),
        (error: unknown) => {
          say(`stop failed: ${error instanceof Error ? error.message : String(error)}`);
          resolve(1);
        },
      );
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    void options.done.then(({ failed, reason }) => {
      if (failed) {
        say(`the supervision tree gave up: ${reason}`);
        resolve(1);
      }
    });
  });
