import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "../../src/redis/private-server.js";

/**
 * Real Redis deployments of the kinds production uses (a password, TLS, Sentinel, Cluster), each
 * made of redis-server processes on free loopback ports, for tests that must connect the way an
 * operator's REDIS_URL would.
 */
export interface RedisProcess {
  readonly port: number;
  readonly dir: string;
  kill(): Promise<void>;
}

const alive = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of alive) child.kill("SIGKILL");
});

/** Starts `redis-server` with `args` and waits for the line that says it is ready. */
export const spawnRedis = async (
  args: readonly string[],
  options: { port?: number; ready?: RegExp; sentinelConfig?: string } = {},
): Promise<RedisProcess> => {
  const dir = mkdtempSync(join(tmpdir(), "rt-redis-deploy-"));
  const port = options.port ?? (await freePort());
  const head: string[] = [];
  if (options.sentinelConfig !== undefined) {
    // Sentinel rewrites its configuration file, so it needs one of its own on disk.
    const file = join(dir, "sentinel.conf");
    writeFileSync(file, options.sentinelConfig);
    head.push(file, "--sentinel");
  }
  const all = [...head, "--port", String(port), "--bind", "127.0.0.1", "--dir", dir];
  all.push("--save", "", "--appendonly", "no", "--logfile", "", ...args);
  const child = spawn("redis-server", all, { stdio: ["ignore", "pipe", "pipe"] });
  alive.add(child);
  child.once("exit", () => alive.delete(child));
  let output = "";
  const ready = options.ready ?? /Ready to accept connections/;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`redis-server ${args.join(" ")}: not ready\n${output}`)),
      10_000,
    );
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code}) at start:\n${output}`));
    });
  });
  return {
    port,
    dir,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGKILL");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
};

export interface Certificates {
  readonly dir: string;
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** A private CA and a server certificate for 127.0.0.1 signed by it, made with openssl. */
export const makeCertificates = (): Certificates => {
  const dir = mkdtempSync(join(tmpdir(), "rt-tls-"));
  const at = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=rt-test-ca",
    "-keyout",
    at("ca.key"),
    "-out",
    at("ca.crt"),
  );
  openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=127.0.0.1",
    "-keyout",
    at("server.key"),
    "-out",
    at("server.csr"),
  );
  writeFileSync(at("san.ext"), "subjectAltName=IP:127.0.0.1\n");
  openssl(
    "x509",
    "-req",
    "-in",
    at("server.csr"),
    "-CA",
    at("ca.crt"),
    "-CAkey",
    at("ca.key"),
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    at("san.ext"),
    "-out",
    at("server.crt"),
  );
  return { dir, ca: at("ca.crt"), cert: at("server.crt"), key: at("server.key") };
};

export interface RedisCluster {
  readonly nodes: readonly RedisProcess[];
  readonly url: string;
  stop(): Promise<void>;
}

/** Three masters, no replicas, slots split by `redis-cli --cluster create`. */
export const startCluster = async (size = 3): Promise<RedisCluster> => {
  const nodes: RedisProcess[] = [];
  try {
    for (let i = 0; i < size; i++) {
      nodes.push(
        await spawnRedis([
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          "nodes.conf",
          "--cluster-node-timeout",
          "2000",
        ]),
      );
    }
    const addresses = nodes.map((n) => `127.0.0.1:${n.port}`);
    execFileSync(
      "redis-cli",
      ["--cluster", "create", ...addresses, "--cluster-replicas", "0", "--cluster-yes"],
      {
        stdio: "pipe",
      },
    );
    // Every node must agree the cluster is whole before a client's first MOVED is trustworthy.
    const deadline = Date.now() + 15_000;
    for (const node of nodes) {
      for (;;) {
        const info = execFileSync("redis-cli", ["-p", String(node.port), "cluster", "info"]).toString();
        if (info.includes("cluster_state:ok")) break;
        if (Date.now() > deadline) throw new Error(`cluster not ready:\n${info}`);
        await sleep(100);
      }
    }
  } catch (error) {
    await Promise.all(nodes.map((n) => n.kill()));
    throw error;
  }
  return {
    nodes,
    url: `redis+cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(",")}`,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.kill()));
    },
  };
};
