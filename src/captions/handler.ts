import { setTimeout as sleep } from "node:timers/promises";
import type { EntityManager } from "@mikro-orm/core";
import { loadConfig } from "../../config/schema.js";
import { Image, PlatformConnection, Post } from "../db/entities.js";
import type { JobSession } from "../db/session.js";
import type { CaptionTaskPayload } from "../domain/caption-task.js";
import type { JobRunContext } from "../jobs/definition.js";
import { describeFailure, failureKindOf, invalidInput } from "../queue/failures.js";
import { decryptField, type FieldKey, loadKeyring } from "../security/field-crypto.js";
import { captionQuality, cleanCaption } from "./clean.js";
import type { CaptionEngine } from "./engine.js";
import { downloadImage, prepareForModel } from "./images.js";
import { imagesNeedingAltText, platformClient, type PostNeedingAltText } from "./platform.js";
import { selectEngine } from "./select-engine.js";

/** Vedfolnir's GenerationResults, field for field. */
export interface GenerationResults {
  task_id: string;
  posts_processed: number;
  images_processed: number;
  captions_generated: number;
  errors_count: number;
  skipped_existing: number;
  processing_time_seconds: number;
  error_details: Array<{ post_id: string; media_id: string; error: string }>;
  generated_image_ids: number[];
}

/** What a thread sets up once for all its caption jobs. */
interface CaptionTools {
  readonly engine: CaptionEngine;
  readonly keys: readonly FieldKey[];
}

let tools: CaptionTools | undefined;
const toolsOnce = (): CaptionTools => {
  if (!tools) {
    const config = loadConfig();
    const keyring = loadKeyring(config, (line) => console.warn(line));
    tools = { engine: selectEngine(config), keys: keyring.all };
  }
  return tools;
};

const FINAL_STATUSES = new Set(["approved", "posted"]);

/** Marks a caption engine outage so it is not mistaken for one bad image. */
class EngineUnavailable extends Error {
  constructor(override readonly cause: unknown) {
    super("caption engine unavailable");
  }
}

/**
 * One caption run, step by step: the connection, the account's recent posts, and for every image
 * without alt text: download, shrink, caption, clean, store for review. Progress at each stage
 * (5, 8, 10, 15, then 20-90 across the posts, 100). One bad image is an error in the results,
 * not a failed task; a model server that is down fails the task as unavailable, to be retried
 * later. Rows are committed post by post (`checkpoint`), so a run cut short keeps what it did.
 */
export const captionHandler = async (
  task: CaptionTaskPayload,
  { resources, signal, progress, log }: JobRunContext<JobSession>,
  toolsFor: () => CaptionTools = toolsOnce,
): Promise<GenerationResults> => {
  const started = Date.now();
  const { em } = resources;
  const { engine, keys } = toolsFor();
  const settings = task.settings;
  const results: GenerationResults = {
    task_id: task.task_id,
    posts_processed: 0,
    images_processed: 0,
    captions_generated: 0,
    errors_count: 0,
    skipped_existing: 0,
    processing_time_seconds: 0,
    error_details: [],
    generated_image_ids: [],
  };

  progress({ percent: 5, step: "Loading the platform connection" });
  const connection = await em.findOne(PlatformConnection, {
    id: task.platform_connection_id,
    userId: task.user_id,
    isActive: true,
  });
  if (!connection)
    throw invalidInput(`platform connection ${task.platform_connection_id} is gone or inactive`);
  const client = platformClient({
    instanceUrl: connection.instanceUrl,
    accessToken: decryptField(connection.accessTokenEncrypted, keys),
    platform: connection.platformType,
  });

  progress({ percent: 8, step: `Connecting to ${client.instanceUrl}` });
  const account = await client.verifyCredentials(signal);

  progress({ percent: 10, step: "Fetching recent posts" });
  const statuses = await client.recentStatuses(account.id, { limit: settings.max_posts_per_run, signal });
  const posts = imagesNeedingAltText(statuses, settings.max_posts_per_run);
  const imageCount = posts.reduce((n, p) => n + p.images.length, 0);
  progress({
    percent: 15,
    step: `Found ${posts.length} posts with ${imageCount} images without alt text`,
    details: { posts: posts.length, images: imageCount },
  });

  for (const [i, found] of posts.entries()) {
    progress({
      percent: 20 + Math.floor((70 * i) / posts.length),
      step: `Processing post ${i + 1} of ${posts.length}`,
      details: { post_id: found.post.id, images: found.images.length, ...countsOf(results) },
    });
    await processPost(em, found, connection, task, engine, { signal, log }, results);
    await resources.checkpoint();
    results.posts_processed++;
    if (i < posts.length - 1 && settings.processing_delay > 0) {
      await sleep(settings.processing_delay * 1000, undefined, { signal });
    }
  }

  results.processing_time_seconds = Math.round((Date.now() - started) / 100) / 10;
  progress({ percent: 100, step: "Completed", details: countsOf(results) });
  return results;
};

const countsOf = (r: GenerationResults) => ({
  captions_generated: r.captions_generated,
  errors_count: r.errors_count,
  skipped_existing: r.skipped_existing,
});

const processPost = async (
  em: EntityManager,
  found: PostNeedingAltText,
  connection: PlatformConnection,
  task: CaptionTaskPayload,
  engine: CaptionEngine,
  { signal, log }: Pick<JobRunContext<unknown>, "signal" | "log">,
  results: GenerationResults,
) => {
  const post =
    (await em.findOne(Post, { platformConnectionId: connection.id, postId: found.post.id })) ??
    em.create(Post, {
      postId: found.post.id,
      userId: task.user_id,
      platformConnectionId: connection.id,
      postUrl: found.post.url ?? "",
      postContent: found.post.content,
    });
  await em.flush();

  for (const image of found.images) {
    const existing = await em.findOne(Image, {
      platformConnectionId: connection.id,
      imagePostId: image.mediaId,
    });
    if (existing && FINAL_STATUSES.has(existing.status) && !task.settings.reprocess_existing) {
      results.skipped_existing++;
      continue;
    }
    const row =
      existing ??
      em.create(Image, {
        postId: post.id,
        platformConnectionId: connection.id,
        imageUrl: image.url,
        imagePostId: image.mediaId,
        attachmentIndex: image.index,
        mediaType: image.mediaType,
        originalPostDate: new Date(found.post.createdAt),
      });
    try {
      const downloaded = await downloadImage(image.url, { signal });
      const prepared = await prepareForModel(downloaded.bytes);
      const answer = await engine.describe({ ...prepared, signal }).catch((error: unknown) => {
        // A model server that is down fails every image alike: stop and let the task retry later.
        if (failureKindOf(error) === "unavailable") throw new EngineUnavailable(error);
        throw error;
      });
      const caption = cleanCaption(answer.text, { maxLength: task.settings.max_caption_length });
      const quality = captionQuality(caption, {
        optimalMin: task.settings.optimal_min_length,
        optimalMax: task.settings.optimal_max_length,
      });
      Object.assign(row, {
        generatedCaption: caption,
        status: "pending",
        promptUsed: answer.prompt,
        captionQualityScore: quality.score,
        needsSpecialReview: quality.needsReview,
        mediaType: downloaded.contentType,
      });
      await em.flush();
      results.captions_generated++;
      results.generated_image_ids.push(row.id);
    } catch (error) {
      if (signal.aborted) throw error;
      if (error instanceof EngineUnavailable) throw error.cause;
      row.status = "error";
      await em.flush();
      results.errors_count++;
      const reason = describeFailure(error);
      results.error_details.push({ post_id: found.post.id, media_id: image.mediaId, error: reason });
      // One bad image is not the task's failure, but an operator should still see it.
      log("warning", `image ${image.mediaId} of post ${found.post.id} skipped: ${reason}`);
    }
    results.images_processed++;
  }
};
