import { defineEntity, type InferEntity } from "@mikro-orm/core";

/**
 * The ledger's tables, after Vedfolnir's. Foreign keys are plain id columns (the constraints live
 * in the migration): handlers load what they need by id and never walk an object graph.
 */

export const ROLES = ["admin", "moderator", "reviewer", "viewer"] as const;
export const PLATFORM_TYPES = ["mastodon", "pixelfed"] as const;
export const IMAGE_STATUSES = ["pending", "reviewed", "approved", "rejected", "posted", "error"] as const;

export const User = defineEntity({
  name: "User",
  tableName: "users",
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    username: p.string().length(64).unique(),
    email: p.string().length(255),
    role: p.enum([...ROLES]),
    isActive: p.boolean().default(true),
    /** SHA-256 of the user's API token, never the token itself. */
    apiTokenHash: p.string().length(64).nullable().unique(),
    createdAt: p.datetime().onCreate(() => new Date()),
  }),
});
export type User = InferEntity<typeof User>;

export const PlatformConnection = defineEntity({
  name: "PlatformConnection",
  tableName: "platform_connections",
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    userId: p.integer(),
    name: p.string().length(100),
    platformType: p.enum([...PLATFORM_TYPES]),
    instanceUrl: p.string().length(500),
    username: p.string().length(255),
    /** AES-256-GCM ciphertext with its key id; never the plain token. */
    accessTokenEncrypted: p.text(),
    isDefault: p.boolean().default(false),
    isActive: p.boolean().default(true),
    createdAt: p.datetime().onCreate(() => new Date()),
  }),
});
export type PlatformConnection = InferEntity<typeof PlatformConnection>;

export const CaptionTask = defineEntity({
  name: "CaptionTask",
  tableName: "caption_generation_tasks",
  properties: (p) => ({
    id: p.string().length(36).primary(),
    userId: p.integer(),
    platformConnectionId: p.integer(),
    status: p.enum(["queued", "running", "completed", "failed", "cancelled"]),
    priority: p.enum(["urgent", "high", "normal", "low"]),
    settingsJson: p.text(),
    createdAt: p.datetime().onCreate(() => new Date()),
    startedAt: p.datetime().nullable(),
    completedAt: p.datetime().nullable(),
    errorMessage: p.text().nullable(),
    resultsJson: p.text().nullable(),
    progressPercent: p.integer().default(0),
    currentStep: p.string().length(500).nullable(),
    retryCount: p.integer().default(0),
    maxRetries: p.integer().default(3),
    cancelledByAdmin: p.boolean().default(false),
    adminUserId: p.integer().nullable(),
    cancellationReason: p.string().length(500).nullable(),
    adminNotes: p.text().nullable(),
    /** Where the task waits or runs: the Redis queue, or the database fallback. */
    queueBackend: p.enum(["redis", "database"]).default("redis"),
    /** The queue's attempt number last written here; every update compares it (fencing). */
    attempt: p.integer().default(0),
    /** Database queue only: not to be claimed before this (a retry's backoff). */
    availableAt: p.datetime().nullable(),
    /** Database queue only: the running attempt's lease; past it the task is run again. */
    leaseUntil: p.datetime().nullable(),
    leaseOwner: p.string().length(200).nullable(),
    /**
     * The last transition, for the audit trigger (migrations/audit-log.ts): a transition bumps
     * `auditSeq` and names these; the trigger copies them, with the state left, into the log.
     */
    auditSeq: p.integer().default(0),
    auditAction: p.string().length(40).nullable(),
    auditActor: p.string().length(200).nullable(),
    auditReason: p.text().nullable(),
  }),
});
export type CaptionTask = InferEntity<typeof CaptionTask>;

export const Post = defineEntity({
  name: "Post",
  tableName: "posts",
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    postId: p.string().length(255),
    userId: p.integer(),
    platformConnectionId: p.integer(),
    postUrl: p.string().length(500),
    postContent: p.text().nullable(),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
  }),
});
export type Post = InferEntity<typeof Post>;

export const Image = defineEntity({
  name: "Image",
  tableName: "images",
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    postId: p.integer(),
    platformConnectionId: p.integer(),
    imageUrl: p.string().length(1000),
    localPath: p.string().length(500).nullable(),
    originalFilename: p.string().length(255).nullable(),
    mediaType: p.string().length(100).nullable(),
    /** The platform's id of the attachment: unique per connection. */
    imagePostId: p.string().length(255),
    attachmentIndex: p.integer().default(0),
    generatedCaption: p.text().nullable(),
    finalCaption: p.text().nullable(),
    status: p.enum([...IMAGE_STATUSES]).default("pending"),
    promptUsed: p.text().nullable(),
    captionQualityScore: p.integer().nullable(),
    needsSpecialReview: p.boolean().default(false),
    originalPostDate: p.datetime().nullable(),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
  }),
});
export type Image = InferEntity<typeof Image>;

/** One task transition or admin action: who did what, when, from which state to which. */
export const AuditEntry = defineEntity({
  name: "AuditEntry",
  tableName: "job_audit_log",
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    taskId: p.string().length(36).nullable(),
    userId: p.integer().nullable(),
    action: p.string().length(40),
    actor: p.string().length(200),
    fromStatus: p.string().length(16).nullable(),
    toStatus: p.string().length(16).nullable(),
    attempt: p.integer().nullable(),
    priority: p.string().length(16).nullable(),
    reason: p.text().nullable(),
    processingSeconds: p.double().nullable(),
    createdAt: p.datetime().onCreate(() => new Date()),
  }),
});
export type AuditEntry = InferEntity<typeof AuditEntry>;

export const entities = [User, PlatformConnection, CaptionTask, Post, Image, AuditEntry];
