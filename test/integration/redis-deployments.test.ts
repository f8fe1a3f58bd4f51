import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { PRIORITIES, priorityRank } from "../../src/domain/priority.js";
import { QueueAdmin } from "../../src/queue/admin.js";
import { Queue } from "../../src/queue/queue.js";
import { connectRedis, type RedisClient } from "../../src/redis/connection.js";
import { freePort } from "../../src/redis/private-server.js";
import { type RuntimeHandle, start } from "../../src/runtime.js";
import { ALL, eventually, newJob } from "../support/queue.js";
import {
  type Certificates,
  makeCertificates,
  type RedisCluster,
  type RedisProcess,
  spawnRedis,
  startCluster,
} from "../support/redis-deployments.js";
import { run } from "../support/redis.js";
import { testConfig, testJob } from "../support/runtime.js";

/**
 * The runtime against the Redis deployments production uses, each a real set of redis-server
 * processes: an ACL user and password, TLS with a private CA, a Sentinel-watched master that
 * fails over, and a three-master Cluster. Each runs real jobs through the embedded runtime.
 */
const allInOne = [{ name: "all", queues: PRIORITIES, concurrency: 4 }];

let runtime: RuntimeHandle | undefined;
const clients: RedisClient[] = [];
const client = (url: string, options: Parameters<typeof connectRedis>[1] = {}) => {
  const c = connectRedis(url, { name: "test", ...options });
  clients.push(c);
  return c;
};
afterEach(async () => {
  await runtime?.stop({ graceful: false });
  runtime = undefined;
  for (const c of clients.splice(0)) c.disconnect();
});

/** Starts the runtime on `url` and runs one echo job through it. */
const echoThrough = async (url: string, env: Record<string, string> = {}) => {
  runtime ??= await start({ config: testConfig(url, env), groups: allInOne });
  const job = testJob("echo", { text: url.split(":")[0] });
  await run(runtime.queue.enqueue(job));
  await eventually(
    async () => (await run(runtime!.queue.getJob(job.id)))?.state === "completed",
    20_000,
    `the job through ${url.replace(/:[^:@/]*@/, ":***@")}`,
  );
  return (await run(runtime.queue.getJob(job.id)))!;
};

describe("Redis with an ACL user and password", () => {
  let server: RedisProcess;
  beforeAll(async () => {
    // The least a Ratatoskr user needs, as docs/deployment.md gives it: its own keys and
    // channels, and no dangerous command but INFO.
    const acl = ["app", "on", ">s3cret-pw", "~rt:*", "&rt:*", "+@all", "-@dangerous", "+info"];
    server = await spawnRedis(["--user", "default", "off", "--user", ...acl]);
  });
  afterAll(() => server.kill());

  it("runs jobs with the credentials from the URL", async () => {
    const job = await echoThrough(`redis://app:s3cret-pw@127.0.0.1:${server.port}`);
    expect(job.result).toBe('{"echoed":"redis"}');
    // What the ACL must still allow: INFO for the health checks, SCAN for the cleanup.
    await eventually(() => runtime!.status().health.memory !== undefined, 10_000, "a memory reading");
    expect(await run(new QueueAdmin(runtime!.queue).purgeFinished())).toBe(1);
  });

  it("refuses to start with a wrong password, and never repeats it", async () => {
    const failure = await start({
      config: testConfig(`redis://app:wrong-guess@127.0.0.1:${server.port}`),
      groups: allInOne,
    }).then(
      () => new Error("started"),
      (error: Error) => error,
    );
    expect(failure.message).toMatch(/WRONGPASS|invalid username-password/);
    expect(failure.message).not.toContain("wrong-guess");
  });

  it("refuses to start without credentials, saying so", async () => {
    const failure = await start({
      config: testConfig(`redis://127.0.0.1:${server.port}`),
      groups: allInOne,
    }).then(
      () => new Error("started"),
      (error: Error) => error,
    );
    expect(failure.message).toMatch(/NOAUTH/);
  });
});

describe("Redis over TLS with a private CA", () => {
  let certs: Certificates;
  let server: RedisProcess;
  beforeAll(async () => {
    certs = makeCertificates();
    const port = await freePort();
    // The later --port 0 turns off the plaintext port spawnRedis opens: TLS only.
    const tls = ["--port", "0", "--tls-port", String(port), "--tls-auth-clients", "no"];
    tls.push("--tls-cert-file", certs.cert, "--tls-key-file", certs.key, "--tls-ca-cert-file", certs.ca);
    server = await spawnRedis(tls, { port });
  });
  afterAll(async () => {
    await server.kill();
    rmSync(certs.dir, { recursive: true, force: true });
  });

  it("runs jobs over rediss:// trusting REDIS_TLS_CA", async () => {
    const job = await echoThrough(`rediss://127.0.0.1:${server.port}`, { REDIS_TLS_CA: certs.ca });
    expect(job.result).toBe('{"echoed":"rediss"}');
  });

  it("refuses a server whose certificate it cannot verify", async () => {
    const untrusting = client(`rediss://127.0.0.1:${server.port}`, { failFast: true });
    await expect(untrusting.ping()).rejects.toThrow();
    const trusting = client(`rediss://127.0.0.1:${server.port}`, { failFast: true, tlsCaFile: certs.ca });
    await eventually(async () => (await trusting.ping().catch(() => "")) === "PONG", 5_000, "TLS ping");
  });

  it("refuses plaintext on the TLS port", async () => {
    const plaintext = client(`redis://127.0.0.1:${server.port}`, { failFast: true });
    await expect(plaintext.ping()).rejects.toThrow();
  });
});

describe("Redis behind Sentinel", () => {
  let master: RedisProcess;
  let replica: RedisProcess;
  let sentinel: RedisProcess;
  // Sentinel drops clients while it reconfigures a server: such an answer reads as empty.
  const cli = (port: number, ...args: string[]) => {
    const auth = port === sentinel?.port ? ["--no-auth-warning", "-a", "sentinel-pw"] : [];
    try {
      return execFileSync("redis-cli", ["-p", String(port), ...auth, ...args], { stdio: "pipe" })
        .toString()
        .trim();
    } catch {
      return "";
    }
  };

  beforeAll(async () => {
    master = await spawnRedis([]);
    replica = await spawnRedis(["--replicaof", "127.0.0.1", String(master.port)]);
    await eventually(
      () => /slave0:.*state=online/.test(cli(master.port, "info", "replication")),
      10_000,
      "the replica to sync",
    );
    sentinel = await spawnRedis([], {
      ready: /\+monitor master main/,
      sentinelConfig: [
        `sentinel monitor main 127.0.0.1 ${master.port} 1`,
        "sentinel down-after-milliseconds main 1000",
        "sentinel failover-timeout main 10000",
        // The sentinels' own password, which REDIS_SENTINEL_PASSWORD gives.
        "requirepass sentinel-pw",
        "",
      ].join("\n"),
    });
    await eventually(
      () => cli(sentinel.port, "sentinel", "replicas", "main").includes(String(replica.port)),
      10_000,
      "sentinel to find the replica",
    );
  });
  afterAll(async () => {
    await Promise.all([sentinel, replica, master].map((p) => p?.kill()));
  });

  it("runs jobs on the master Sentinel names, and goes on after a failover", async () => {
    const url = `redis+sentinel://127.0.0.1:${sentinel.port}/main`;
    const env = { REDIS_SENTINEL_PASSWORD: "sentinel-pw" };
    expect((await echoThrough(url, env)).result).toBe('{"echoed":"redis+sentinel"}');

    cli(sentinel.port, "sentinel", "failover", "main");
    await eventually(
      () => cli(sentinel.port, "sentinel", "get-master-addr-by-name", "main").endsWith(String(replica.port)),
      15_000,
      "the failover",
    );
    await eventually(() => cli(replica.port, "role").startsWith("master"), 10_000, "the promotion");
    // Sentinel demotes the old master and drops its clients, so they ask Sentinel again. What
    // was written to it in between is lost with it (replication is asynchronous): the ledger's
    // reconciler enqueues such tasks again; here nothing is written in that window.
    await eventually(() => cli(master.port, "role").startsWith("slave"), 15_000, "the old master's demotion");
    // Jobs enqueued after the failover reach the new master and run.
    const after = await echoThrough(url, env);
    expect(after.result).toBe('{"echoed":"redis+sentinel"}');
    // Its completed record is in the newest bucket the new master lists.
    const bucket = cli(replica.port, "zrange", "rt:{caption}:done", "-1", "-1");
    expect(cli(replica.port, "hexists", bucket, after.id)).toBe("1");
  });
});

describe("Redis Cluster", () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterAll(() => cluster?.stop());

  it("keeps every key of a queue in the slot of its hash tag, on one node", async () => {
    const queue = new Queue(client(cluster.url), {});
    await run(queue.prepare());
    for (const p of PRIORITIES) await run(queue.enqueue(newJob(p, { userId: `u-${p}` })));
    await run(queue.enqueue(newJob("low", { delayMs: 60_000 })));
    const holders = cluster.nodes.filter(
      (n) => Number(execFileSync("redis-cli", ["-p", String(n.port), "dbsize"]).toString()) > 0,
    );
    expect(holders).toHaveLength(1);
    const keys = execFileSync("redis-cli", ["-p", String(holders[0]!.port), "keys", "*"])
      .toString()
      .trim()
      .split("\n");
    expect(keys.length).toBeGreaterThan(8);
    expect(keys.every((k) => k.startsWith("rt:{caption}:"))).toBe(true);
  });

  it("claims in strict priority order, retries, delays, dead-letters and cancels", async () => {
    const queue = new Queue(client(cluster.url), { name: "cluster-ops" });
    await run(queue.prepare());
    const sent = Array.from({ length: 40 }, (_, i) => newJob(PRIORITIES[(i * 3) % 4]!));
    for (const job of sent) await run(queue.enqueue(job));
    const claimed = [];
    for (;;) {
      const claim = await run(queue.claim("c1", ALL, 7));
      if (claim.jobs.length === 0) break;
      claimed.push(...claim.jobs);
    }
    expect(claimed).toHaveLength(40);
    const ranks = claimed.map((j) => priorityRank(j.priority));
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b));

    const delayed = newJob("urgent", { delayMs: 200 });
    await run(queue.enqueue(delayed));
    await eventually(async () => (await run(queue.promote())).moved === 1, 5_000, "promotion");

    const admin = new QueueAdmin(queue);
    const [first] = (await run(queue.claim("c1", ALL, 1))).jobs;
    expect(first?.id).toBe(delayed.id);
    const retry = await run(queue.fail({ ...first!, error: "flaky", retriable: true, delayMs: 0 }));
    expect(retry.outcome).toBe("retry");
    const [second] = (await run(queue.claim("c1", ALL, 1))).jobs;
    expect(second).toMatchObject({ id: delayed.id, attempt: first!.attempt + 1 });
    expect(await run(queue.fail({ ...second!, error: "bad input", retriable: false, delayMs: 0 }))).toEqual({
      outcome: "dead",
    });
    expect((await run(admin.listDead())).map((d) => d.taskId)).toContain(delayed.id);

    const doomed = newJob("low");
    await run(queue.enqueue(doomed));
    await run(queue.cancel(doomed.id, "no longer wanted"));
    expect((await run(queue.getJob(doomed.id)))?.state).toBe("cancelled");
  });

  it("runs jobs through the whole runtime, with heartbeats, health and cleanup", async () => {
    const job = await echoThrough(cluster.url);
    expect(job.result).toBe('{"echoed":"redis+cluster"}');
    await eventually(() => runtime!.status().health.memory !== undefined, 10_000, "a memory reading");
    const admin = new QueueAdmin(runtime!.queue);
    expect(await run(admin.purgeFinished())).toBeGreaterThanOrEqual(1);
    expect(await run(runtime!.queue.getJob(job.id))).toBeUndefined();
  });
});
