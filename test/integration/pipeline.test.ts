import { Either } from "effect";
import sharp from "sharp";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CaptionTask, Image, Post } from "../../src/db/entities.js";
import type { GenerationResults } from "../../src/captions/handler.js";
import { PRIORITIES } from "../../src/domain/priority.js";
import { type RuntimeHandle, start } from "../../src/runtime.js";
import { TaskService } from "../../src/tasks/service.js";
import { fakeStatus, type FakeMastodon, startFakeMastodon } from "../support/fake-mastodon.js";
import { hasPostgres, type LedgerDb, openLedgerDb, seedUser, testKeyMaterial } from "../support/ledger.js";
import { databaseColumnsContaining, redisKeysContaining } from "../support/plaintext-scan.js";
import { eventually } from "../support/queue.js";
import { run, useRedis } from "../support/redis.js";
import { answer, startFakeOllama, status } from "../captions/fake-ollama.js";
import { DEFAULT_PROMPT } from "../../src/captions/engines/prompts.js";
import { testConfig } from "../support/runtime.js";

const TOKEN = "mastodon-access-token";
const BUILD_JOBS = new URL("../../src/jobs/index.ts", import.meta.url).href;

/** Real image bytes of several formats and shapes. */
const makeImages = async () => {
  const colours = ["#1e66f5", "#40a02b", "#d20f39", "#fe640b", "#8839ef"];
  const files: Record<string, { bytes: Buffer; contentType: string }> = {};
  for (const [i, colour] of colours.entries()) {
    const base = sharp({
      create: { width: 1600 - i * 200, height: 900 + i * 150, channels: 3, background: colour },
    });
    files[`photo${i}.jpg`] = { bytes: await base.clone().jpeg().toBuffer(), contentType: "image/jpeg" };
    files[`photo${i}.png`] = { bytes: await base.clone().png().toBuffer(), contentType: "image/png" };
  }
  files["broken.jpg"] = {
    bytes: (files["photo0.jpg"]?.bytes ?? Buffer.alloc(0)).subarray(0, 200),
    contentType: "image/jpeg",
  };
  return files;
};

/** Ten posts with two images each lacking alt text, and a post whose image has alt text already. */
const tenPosts = () => [
  ...Array.from({ length: 10 }, (_, p) =>
    fakeStatus({
      id: String(1000 + p),
      images: [
        { mediaId: `m${p}a`, file: `photo${p % 5}.jpg` },
        { mediaId: `m${p}b`, file: `photo${(p + 2) % 5}.png` },
      ],
    }),
  ),
  fakeStatus({
    id: "999",
    images: [{ mediaId: "described", file: "photo0.jpg", description: "A described photo" }],
  }),
];

const suite = (kind: "sqlite" | "postgres", enabled: boolean) =>
  describe.skipIf(!enabled)(`caption pipeline end to end on ${kind}`, () => {
    const redis = useRedis();
    let db: LedgerDb;
    let mastodon: FakeMastodon;
    let runtime: RuntimeHandle | undefined;

    beforeAll(async () => {
      db = await openLedgerDb(kind);
      mastodon = await startFakeMastodon({
        token: TOKEN,
        account: { id: "42", username: "alice" },
        statuses: tenPosts(),
        images: await makeImages(),
      });
    });
    afterAll(async () => {
      await mastodon?.close();
      await db?.cleanup();
    });
    afterEach(async () => {
      await runtime?.stop({ graceful: false });
      runtime = undefined;
    });

    const startRuntime = async (env: Record<string, string> = { CAPTION_ENGINE: "basic" }) => {
      runtime = await start({
        config: testConfig(redis.server.url, {
          DATABASE_URL: db.url,
          RT_JOBS_MODULE: BUILD_JOBS,
          RT_ENCRYPTION_KEY: testKeyMaterial,
          ...env,
        }),
        groups: [{ name: "all", queues: PRIORITIES, concurrency: 2 }],
        ledger: true,
      });
      return runtime;
    };

    const task = async (id: string) => (await db.orm.em.fork().findOne(CaptionTask, { id }))!;

    it("captions 20 images of 10 posts through the queue and the pool, with progress from start to 100", async () => {
      const { queue } = await startRuntime();
      const service = new TaskService(db.orm, queue);
      const { userId, connectionId } = await seedUser(db.orm, { instanceUrl: mastodon.url, token: TOKEN });

      // Watch the progress events that every web server would get.
      const events = redis.client();
      const seen: number[] = [];
      await events.subscribe(queue.keys.events);
      events.on("message", (_channel: string, message: string) => {
        const event = JSON.parse(message) as { type: string; percent?: number };
        if (event.type === "progress" && event.percent !== undefined) seen.push(event.percent);
      });

      const submitted = await service.submit({
        userId,
        priority: "high",
        settings: { processing_delay: 0.1 },
      });
      const taskId = Either.isRight(submitted) ? submitted.right.taskId : "";
      await eventually(async () => (await task(taskId)).status === "completed", 60_000, "the caption task");

      const row = await task(taskId);
      const results = JSON.parse(row.resultsJson!) as GenerationResults;
      expect(results).toMatchObject({
        task_id: taskId,
        posts_processed: 10,
        images_processed: 20,
        captions_generated: 20,
        errors_count: 0,
        skipped_existing: 0,
        error_details: [],
      });
      expect(results.generated_image_ids).toHaveLength(20);
      expect(row).toMatchObject({ progressPercent: 100, currentStep: "Completed", attempt: 1 });

      const em = db.orm.em.fork();
      const images = await em.find(
        Image,
        { platformConnectionId: connectionId },
        { orderBy: { imagePostId: "asc" } },
      );
      expect(images).toHaveLength(20);
      for (const image of images) {
        expect(image.status).toBe("pending");
        expect(image.generatedCaption).toMatch(/ \(AI-generated\)$/);
        expect(image.generatedCaption!.length).toBeLessThanOrEqual(500);
        // The basic engine uses no prompt; the column says so rather than staying null.
        expect(image.promptUsed).not.toBeNull();
        expect(image.captionQualityScore).toBeGreaterThanOrEqual(0);
      }
      // The basic engine says what it measured: the first post's JPEG is blue.
      expect(images.find((i) => i.imagePostId === "m0a")?.generatedCaption).toMatch(/blue/i);
      expect(await em.count(Post, { platformConnectionId: connectionId })).toBe(10);
      expect(images.some((i) => i.imagePostId === "described")).toBe(false);

      // Progress: from the early steps through the posts to 100, never backwards. The ledger
      // hears of the completion first, so the last progress event may still be on its way.
      expect(seen[0]).toBeLessThanOrEqual(20);
      await eventually(async () => seen.at(-1) === 100, 5_000, "the last progress event");
      expect(seen.some((p) => p >= 20 && p <= 90)).toBe(true);
      expect([...seen].sort((a, b) => a - b)).toEqual(seen);
      await events.unsubscribe();

      // The access token travelled only in the Authorization header, and the right one.
      const apiCalls = mastodon.requests.filter((r) => r.path.startsWith("/api/"));
      expect(apiCalls.length).toBeGreaterThan(0);
      expect(apiCalls.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);

      // And nowhere at rest: no Redis key and no text column of any table holds it in plaintext
      // (the connection keeps it encrypted). The scanners do find what is there: the task id.
      expect(await redisKeysContaining(redis.client(), TOKEN)).toEqual([]);
      expect(await databaseColumnsContaining(db.orm, TOKEN)).toEqual([]);
      expect(await redisKeysContaining(redis.client(), taskId)).not.toEqual([]);
      expect(await databaseColumnsContaining(db.orm, taskId)).toContain("caption_generation_tasks.id");
    }, 120_000);

    it("captions with an Ollama-compatible model server, and waits for it when it is down", async () => {
      const ollama = await startFakeOllama();
      try {
        ollama.next(status(500, "warming up"));
        ollama.always(answer('"A red bicycle leaning on a brick wall."\nIt looks sunny.'));
        const { queue } = await startRuntime({ OLLAMA_URL: ollama.url });
        const service = new TaskService(db.orm, queue);
        const { userId, connectionId } = await seedUser(db.orm, { instanceUrl: mastodon.url, token: TOKEN });
        const ok = await service.submit({ userId, priority: "urgent", settings: { processing_delay: 0 } });
        const okId = Either.isRight(ok) ? ok.right.taskId : "";
        await eventually(async () => (await task(okId)).status === "completed", 60_000, "the Ollama run");
        const images = await db.orm.em.fork().find(Image, { platformConnectionId: connectionId });
        expect(images).toHaveLength(20);
        for (const image of images) {
          expect(image.generatedCaption).toBe("A red bicycle leaning on a brick wall. (AI-generated)");
          expect(image.promptUsed).toBe(DEFAULT_PROMPT);
        }
        // 20 images, one of them asked twice (the 500 was retried inside the engine).
        expect(ollama.requests).toHaveLength(21);
        for (const seen of ollama.requests) {
          expect(seen.body).toMatchObject({ model: "llava:7b", stream: false });
          const jpeg = Buffer.from(seen.body.images[0] ?? "", "base64");
          expect(jpeg.subarray(0, 3)).toEqual(Buffer.from([0xff, 0xd8, 0xff]));
          const { width = 0, height = 0 } = await sharp(jpeg).metadata();
          expect(Math.max(width, height)).toBeLessThanOrEqual(1024);
        }

        // The model server goes down: the task is not failed image by image but put back to wait.
        ollama.always(status(503, "loading model"));
        const other = await seedUser(db.orm, { instanceUrl: mastodon.url, token: TOKEN });
        const down = await service.submit({
          userId: other.userId,
          priority: "urgent",
          settings: { processing_delay: 0 },
        });
        const downId = Either.isRight(down) ? down.right.taskId : "";
        await eventually(
          async () => (await task(downId)).retryCount === 1,
          60_000,
          "the task to wait for a retry",
        );
        expect(await task(downId)).toMatchObject({ status: "queued", currentStep: "Waiting to retry" });
        expect((await task(downId)).errorMessage).toMatch(/503|unavailable|loading model/i);
        expect((await run(queue.getJob(downId)))?.state).toBe("delayed");
        const errored = await db.orm.em
          .fork()
          .count(Image, { platformConnectionId: other.connectionId, status: "error" });
        expect(errored).toBe(0);
      } finally {
        await ollama.close();
      }
    }, 120_000);

    it("skips images a person already approved, keeps going past broken ones, and says so", async () => {
      const { queue } = await startRuntime();
      const service = new TaskService(db.orm, queue);
      const { userId, connectionId } = await seedUser(db.orm, { instanceUrl: mastodon.url, token: TOKEN });
      const first = await service.submit({ userId, priority: "normal", settings: { processing_delay: 0 } });
      const firstId = Either.isRight(first) ? first.right.taskId : "";
      await eventually(async () => (await task(firstId)).status === "completed", 60_000, "the first run");
      await db.orm.em
        .fork()
        .nativeUpdate(
          Image,
          { platformConnectionId: connectionId, imagePostId: { $in: ["m0a", "m1a", "m2b"] } },
          { status: "approved" },
        );

      // A broken file and a missing one join the account's newest post.
      mastodon.setStatuses([
        fakeStatus({
          id: "2000",
          images: [
            { mediaId: "broken", file: "broken.jpg" },
            { mediaId: "gone", file: "nothing-here.jpg" },
          ],
        }),
        ...tenPosts(),
      ]);
      const second = await service.submit({ userId, priority: "normal", settings: { processing_delay: 0 } });
      const secondId = Either.isRight(second) ? second.right.taskId : "";
      await eventually(async () => (await task(secondId)).status === "completed", 60_000, "the second run");
      const results = JSON.parse((await task(secondId)).resultsJson!) as GenerationResults;
      expect(results).toMatchObject({
        posts_processed: 11,
        skipped_existing: 3,
        captions_generated: 17,
        errors_count: 2,
      });
      expect(results.error_details.map((e) => e.media_id).sort()).toEqual(["broken", "gone"]);
      for (const detail of results.error_details) expect(detail.error).not.toContain(TOKEN);
      const broken = await db.orm.em
        .fork()
        .findOne(Image, { platformConnectionId: connectionId, imagePostId: "broken" });
      expect(broken?.status).toBe("error");
      mastodon.setStatuses(tenPosts());
    }, 120_000);
  });

suite("sqlite", true);
suite("postgres", hasPostgres);
