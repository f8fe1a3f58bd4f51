import WebSocket from "ws";

export class WatchUsageError extends Error {}

interface Frame {
  readonly event: string;
  readonly data: Record<string, unknown>;
}

/**
 * `ratatoskr watch <task id> [--url U] [--token T]`: follows one task over the progress socket,
 * as a web page would, printing each change, until it ends. The server and token come from the
 * flags or RT_URL / RT_TOKEN. Exit status: 0 completed, 1 failed or cancelled, 2 refused.
 */
export const runWatch = (
  taskId: string | undefined,
  options: { url?: string | undefined; token?: string | undefined },
  print: (line: string) => void,
): Promise<number> => {
  const base = options.url ?? process.env.RT_URL;
  const token = options.token ?? process.env.RT_TOKEN;
  if (!taskId) throw new WatchUsageError("expected a task id: ratatoskr watch <task id>");
  if (!base || !/^https?:\/\//.test(base)) {
    throw new WatchUsageError("give the server as --url http://host:port (or RT_URL)");
  }
  if (!token) throw new WatchUsageError("give an API token as --token (or RT_TOKEN)");
  const socket = new WebSocket(`${base.replace(/^http/, "ws").replace(/\/+$/, "")}/ws`);
  return new Promise((resolve) => {
    let ended = false;
    const end = (code: number, line?: string) => {
      if (ended) return;
      ended = true;
      if (line) print(line);
      socket.close();
      resolve(code);
    };
    socket.on("open", () => socket.send(JSON.stringify({ event: "auth", data: { token } })));
    socket.on("error", (error) => end(2, `cannot reach ${base}: ${error.message}`));
    socket.on("close", () => end(2, "the server closed the connection"));
    socket.on("message", (raw) => {
      let frame: Frame;
      try {
        frame = JSON.parse(String(raw)) as Frame;
      } catch {
        return end(2, `the server sent something that is not a frame: ${String(raw).slice(0, 80)}`);
      }
      const { event, data } = frame;
      switch (event) {
        case "authenticated":
          socket.send(JSON.stringify({ event: "join_task", data: { task_id: taskId } }));
          return;
        case "progress_update":
          print(
            `${String(data.progress_percent ?? 0).padStart(3)}%  ${String(data.current_step ?? data.status)}`,
          );
          return;
        case "task_completed":
          return end(0, `completed: ${JSON.stringify(data.results)}`);
        case "task_error":
          return end(1, `failed (${String(data.category)}): ${String(data.error)}`);
        case "task_cancelled":
          return end(1, `cancelled: ${String(data.reason ?? "")}`);
        case "error":
          return end(2, `refused: ${String(data.message)}`);
      }
    });
  });
};
