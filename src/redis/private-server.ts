import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";

/** Asks the kernel for a port nobody listens on (bind to 0), then frees it for the caller. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });

/** Children alive now: a process that exits without stopping them (a crash) takes them along. */
const children = new Set<ChildProcess>();
let reaperInstalled = false;
const reapOnExit = (child: ChildProcess) => {
  children.add(child);
  child.once("exit", () => children.delete(child));
  if (reaperInstalled) return;
  reaperInstalled = true;
  process.once("exit", () => {
    for (const c of children) c.kill("SIGKILL");
  });
};

/**
 * A redis-server of our own on a free loopback port, keeping nothing on disk. The embedded
 * runtime uses one when no REDIS_URL is given; tests use them to kill, pause and restart Redis.
 */
export class PrivateRedis {
  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly binary: string,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(options: { port?: number; binary?: string } = {}): Promise<PrivateRedis> {
    const dir = await mkdtemp(join(tmpdir(), "ratatoskr-redis-"));
    const server = new PrivateRedis(
      options.port ?? (await freePort()),
      dir,
      options.binary ?? "redis-server",
    );
    try {
      await server.spawn();
    } catch (error) {
      // Not answering in time, or exited: nothing of it stays behind.
      await server.kill().catch(() => {});
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
    return server;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  private async spawn(): Promise<void> {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    args.push("--dir", this.dir, "--logfile", "", "--loglevel", "warning");
    // A bucket of completed jobs' records expires as one key: freed in the background, not in line.
    args.push("--lazyfree-lazy-expire", "yes");
    const child = spawn(this.binary, args, { stdio: ["ignore", "ignore", "pipe"] });
    reapOnExit(child);
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const spawned = new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", (err) =>
        reject(new Error(`cannot start ${this.binary}: ${err.message} (is redis-server installed?)`)),
      );
    });
    await spawned;
    this.child = child;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (!this.running)
        throw new Error(`redis-server on port ${this.port} exited at start: ${stderr.trim()}`);
      if (await this.ping()) return;
      if (Date.now() > deadline)
        throw new Error(`redis-server on port ${this.port} did not answer within 10 s`);
      await sleep(20);
    }
  }

  private async ping(): Promise<boolean> {
    const probe = new Redis(this.port, "127.0.0.1", {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: 500,
    });
    probe.on("error", () => {});
    try {
      await probe.connect();
      return (await probe.ping()) === "PONG";
    } catch {
      return false;
    } finally {
      probe.disconnect();
    }
  }

  private waitForExit(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return Promise.resolve();
    return new Promise((resolve) => child.once("exit", () => resolve()));
  }

  /** SIGKILL: the server vanishes mid-sentence, as in a crash. */
  async kill(): Promise<void> {
    const exited = this.waitForExit();
    this.child?.kill("SIGKILL");
    await exited;
  }

  /** Starts the server again on the same port, empty (nothing was persisted). */
  async restart(): Promise<void> {
    if (this.running) await this.kill();
    await this.spawn();
  }

  /** SIGSTOP/SIGCONT: connections stay open but nothing answers, like a hung host. */
  freeze(): void {
    this.child?.kill("SIGSTOP");
  }

  thaw(): void {
    this.child?.kill("SIGCONT");
  }

  async stop(): Promise<void> {
    if (this.running) {
      this.thaw();
      const exited = this.waitForExit();
      this.child?.kill("SIGTERM");
      await Promise.race([exited, sleep(5_000).then(() => this.kill())]);
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}
