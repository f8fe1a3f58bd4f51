import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** What the fake server received in one request. */
export interface Seen {
  readonly path: string;
  readonly contentType: string | undefined;
  readonly body: {
    model: string;
    prompt: string;
    images: string[];
    stream: boolean;
    options?: Record<string, unknown>;
  };
}

/** How the fake answers one request. */
export type Behaviour = (seen: Seen, res: ServerResponse) => void;

const json = (res: ServerResponse, status: number, value: unknown) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(value));
};

/** Ollama's answer with `text` as the model's response. */
export const answer =
  (text: string): Behaviour =>
  (seen, res) =>
    json(res, 200, {
      model: seen.body.model,
      created_at: new Date().toISOString(),
      response: text,
      done: true,
    });

/** An error status with Ollama's `{"error": ...}` body. */
export const status =
  (code: number, error = `status ${code}`): Behaviour =>
  (_, res) =>
    json(res, code, { error });

/** A body that is not JSON, like a proxy's error page. */
export const raw =
  (code: number, text: string): Behaviour =>
  (_, res) => {
    res.writeHead(code, { "content-type": "text/html" });
    res.end(text);
  };

/** `then` after `ms`, unless the client went away first. */
export const slow =
  (ms: number, then: Behaviour = answer("A slow answer.")): Behaviour =>
  (seen, res) => {
    const timer = setTimeout(() => then(seen, res), ms);
    res.on("close", () => clearTimeout(timer));
  };

/** The connection is cut without an answer (the client sees a socket error). */
export const reset = (): Behaviour => (_, res) => res.socket?.destroy();

/**
 * A real HTTP server on 127.0.0.1 with a free port, playing Ollama. Each request takes the next
 * behaviour queued with `next`, or the default one (`always`) when the queue is empty.
 */
export const startFakeOllama = async () => {
  const requests: Seen[] = [];
  const queue: Behaviour[] = [];
  let fallback: Behaviour = answer("A default caption.");
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const seen: Seen = {
        path: req.url ?? "",
        contentType: req.headers["content-type"],
        body: JSON.parse(Buffer.concat(chunks).toString("utf8")) as Seen["body"],
      };
      requests.push(seen);
      (queue.shift() ?? fallback)(seen, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    /** Queue behaviours for the next requests, in order. (Not `then`: that would make this a thenable.) */
    next(...behaviours: Behaviour[]) {
      queue.push(...behaviours);
    },
    always(behaviour: Behaviour) {
      fallback = behaviour;
    },
    reset() {
      requests.length = 0;
      queue.length = 0;
      fallback = answer("A default caption.");
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};
export type FakeOllama = Awaited<ReturnType<typeof startFakeOllama>>;

/** A port nothing listens on: taken from the OS, then released. */
export const closedPort = async () => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
};
