/**
 * Submission latency through HTTP: `POST /caption/start` at a fixed rate (open loop: requests
 * leave on schedule whatever the answers, so a slow server shows as latency, not as a lower
 * rate), against a served instance on this machine — uWebSockets.js, the task service, SQLite,
 * a private redis-server, and the workers of the development profile running what is submitted.
 * Prints p50/p90/p99/max and the rate achieved. Not a test: nothing is asserted but that every
 * submission was accepted.
 *
 * The first `--warmup` seconds of the load are sent and checked like the rest but not counted: a
 * fresh process spends its first second or so compiling the path and starting its workers, and
 * at 100/s those first submissions (200-400 ms each) were the whole p90 and p99 of a 10 s run.
 *
 *   npm run bench:http                       # 500 req/s for 10 s, after 2 s of warm-up
 *   npm run bench:http -- --rate 200 --seconds 5 --warmup 0
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { groupsFor } from "../config/profiles.js";
import { loadConfig } from "../config/schema.js";
import { PlatformConnection, User } from "../src/db/entities.js";
import { migrate, openDatabase } from "../src/db/orm.js";
import { plainLogger } from "../src/log.js";
import { PrivateRedis } from "../src/redis/private-server.js";
import { start } from "../src/runtime.js";
import { encryptField, parseKey } from "../src/security/field-crypto.js";
import { hashToken, newApiToken } from "../src/security/tokens.js";
import { TaskService } from "../src/tasks/service.js";
import { startWebServer } from "../src/web/server.js";
import { createPostgresDatabase } from "../test/support/databases.js";

const { values } = parseArgs({
  options: {
    rate: { type: "string", default: "500" },
    seconds: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    database: { type: "string", default: "sqlite" },
  },
});
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const warmupSeconds = Number(values.warmup);
if (!(rate > 0 && seconds > 0 && warmupSeconds >= 0))
  throw new Error("--rate and --seconds take positive numbers, --warmup zero or more");
const warmJobs = Math.round(rate * warmupSeconds);
const total = warmJobs + Math.round(rate * seconds);

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;

const main = async () => {
  const redis = await PrivateRedis.start();
  const dataDir = mkdtempSync(join(tmpdir(), "rt-bench-http-"));
  if (values.database !== "sqlite" && values.database !== "postgres")
    throw new Error("--database takes sqlite or postgres");
  // PostgreSQL: a scratch database on the local server (RT_TEST_POSTGRES_URL), dropped after.
  const pg = values.database === "postgres" ? await createPostgresDatabase() : undefined;
  const databaseUrl = pg?.url ?? `sqlite:${join(dataDir, "ledger.sqlite")}`;
  const keyMaterial = randomBytes(32).toString("base64");
  const orm = await openDatabase({ url: databaseUrl, dataDir });
  await migrate(orm);
  // One user per submission: each may have one active task.
  process.stdout.write(`seeding ${total} users... `);
  const tokens: string[] = [];
  const key = parseKey(keyMaterial);
  for (let i = 0; i < total; i += 500) {
    const em = orm.em.fork();
    const batch = Array.from({ length: Math.min(500, total - i) }, (_, j) => {
      const token = newApiToken();
      tokens.push(token);
      return em.create(User, {
        username: `bench${i + j}`,
        email: `bench${i + j}@example.org`,
        role: "viewer",
        apiTokenHash: hashToken(token),
      });
    });
    await em.flush();
    for (const user of batch)
      em.create(PlatformConnection, {
        userId: user.id,
        name: "main",
        platformType: "mastodon",
        instanceUrl: "https://example.social",
        username: user.username,
        accessTokenEncrypted: encryptField("token", key),
        isDefault: true,
      });
    await em.flush();
  }
  await orm.close();
  console.log("done");

  const config = loadConfig({
    ...process.env,
    REDIS_URL: redis.url,
    DATABASE_URL: databaseUrl,
    RT_ENCRYPTION_KEY: keyMaterial,
    RT_JOBS_MODULE: new URL("./caption-noop-jobs.ts", import.meta.url).href,
    RT_LOG_LEVEL: process.env.RT_LOG_LEVEL ?? "error",
  });
  const runtime = await start({ config, groups: groupsFor(config, "web"), ledger: true });
  const server = await startWebServer({
    orm: runtime.orm!,
    tasks: new TaskService(runtime.orm!, runtime.queue, { health: runtime.health, metrics: runtime.metrics }),
    queue: runtime.queue,
    metrics: runtime.metrics,
    runtime: () => runtime.status(),
    logger: plainLogger("logfmt", "error"),
    host: "127.0.0.1",
    port: 0,
    bodyLimitBytes: 64 * 1024,
  });
  const url = `http://127.0.0.1:${server.port}/caption/start`;

  const latencies: number[] = [];
  const failures: string[] = [];
  const began = performance.now();
  let measuredFrom = began;
  const requests: Array<Promise<void>> = [];
  for (let i = 0; i < total; i++) {
    const due = began + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    if (i === warmJobs) measuredFrom = due;
    const sent = performance.now();
    requests.push(
      fetch(url, {
        method: "POST",
        headers: { authorization: `Bearer ${tokens[i]}`, "content-type": "application/json" },
        body: "{}",
      }).then(
        async (response) => {
          await response.arrayBuffer();
          // From when it was due: a request the generator sent late still counts its wait.
          if (i >= warmJobs) latencies.push(performance.now() - Math.min(sent, due));
          if (response.status !== 202) failures.push(String(response.status));
        },
        (error: unknown) => void failures.push(String(error)),
      ),
    );
  }
  await Promise.all(requests);
  const elapsed = (performance.now() - measuredFrom) / 1000;
  latencies.sort((a, b) => a - b);
  const ms = (n: number) => `${n.toFixed(1)} ms`;
  console.log(
    `\nPOST /caption/start on ${values.database}, ${total - warmJobs} submissions at ${rate}/s (open loop) ` +
      `after ${warmJobs} in ${warmupSeconds} s of warm-up, ${cpus().length} cores`,
  );
  console.log(`  achieved ${((total - warmJobs) / elapsed).toFixed(0)}/s; failures ${failures.length}`);
  console.log(
    `  latency p50 ${ms(quantile(latencies, 0.5))}  p90 ${ms(quantile(latencies, 0.9))}  ` +
      `p99 ${ms(quantile(latencies, 0.99))}  max ${ms(latencies.at(-1) ?? Number.NaN)}`,
  );
  server.close();
  await runtime.stop({ graceful: false });
  await redis.stop();
  await pg?.drop();
  if (failures.length > 0) {
    console.error(`failures: ${[...new Set(failures)].join(", ")}`);
    process.exit(1);
  }
};

// Some awaits on the way (module loading through tsx's off-thread hooks) hold no handle of their
// own; without one, Node would end the process silently in the middle of them.
const keepAlive = setInterval(() => {}, 1 << 30);
main().then(
  () => clearInterval(keepAlive),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
