import type { MikroORM } from "@mikro-orm/core";
import { Either } from "effect";
import type { CaptionTask } from "../db/entities.js";
import { isPriority, type Priority } from "../domain/priority.js";
import { parseTaskId } from "../domain/task-id.js";
import type { SubmitRateLimited } from "../tasks/errors.js";
import type { SubmitInput, TaskService } from "../tasks/service.js";
import { authenticate, type Caller } from "./auth.js";
import { HttpError, reply, type Reply, type Request } from "./http.js";
import { publicFailure } from "./public-error.js";
import type { Router } from "./router.js";

/** The settings a caption request may carry at its top level (Vedfolnir's form fields). */
const SETTING_FIELDS = [
  "max_posts_per_run",
  "max_caption_length",
  "optimal_min_length",
  "optimal_max_length",
  "reprocess_existing",
  "processing_delay",
] as const;

/** Form fields arrive as strings: numbers and booleans are read as such; JSON is left as sent. */
const fromForm = (value: unknown): unknown => {
  if (typeof value !== "string") return value;
  const text = value.trim();
  if (/^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  if (/^(true|on|yes)$/i.test(text)) return true;
  if (/^(false|off|no)$/i.test(text)) return false;
  return value;
};

const submission = (body: Record<string, unknown>, caller: Caller): SubmitInput => {
  const settings: Record<string, unknown> = {};
  for (const field of SETTING_FIELDS) if (body[field] !== undefined) settings[field] = fromForm(body[field]);
  const details: Array<{ field: string; message: string }> = [];
  let platformConnectionId: number | undefined;
  const rawConnection = fromForm(body.platform_connection_id);
  if (rawConnection !== undefined && rawConnection !== "") {
    if (typeof rawConnection === "number" && Number.isInteger(rawConnection) && rawConnection > 0)
      platformConnectionId = rawConnection;
    else details.push({ field: "platform_connection_id", message: "must be a positive whole number" });
  }
  // Admins work at high priority unless they say otherwise; others always at normal.
  let priority: Priority = caller.admin ? "high" : "normal";
  if (caller.admin && body.priority !== undefined) {
    if (isPriority(body.priority)) priority = body.priority;
    else details.push({ field: "priority", message: "must be one of urgent, high, normal, low" });
  }
  if (details.length > 0) throw invalid(details);
  return { userId: caller.userId, platformConnectionId, priority, settings, exempt: caller.admin };
};

/** 429, with Retry-After: when the oldest submission that counts leaves the window. */
const rateLimited = (error: SubmitRateLimited) =>
  new HttpError(
    429,
    "rate_limited",
    error.message,
    { retry_after: error.retryAfterSeconds },
    { "retry-after": String(error.retryAfterSeconds) },
  );

const invalid = (details: ReadonlyArray<{ field: string; message: string }>) =>
  new HttpError(400, "validation_error", "the request is not valid", { details });

const taskIdParam = (request: Request): string => {
  const id = parseTaskId(request.params[0]);
  if (id._tag === "None") throw new HttpError(400, "invalid_task_id", "the task id is not a valid task id");
  return id.value;
};

const notFound = () => new HttpError(404, "not_found", "no such task");

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

const parseResults = (row: CaptionTask): unknown => (row.resultsJson ? JSON.parse(row.resultsJson) : null);

const statusMessage = (row: CaptionTask) => {
  switch (row.status) {
    case "queued":
      return "Waiting for a worker";
    case "running":
      return row.currentStep ?? "Running";
    case "completed":
      return "Caption generation completed";
    case "failed":
      return publicFailure(row.errorMessage).message;
    case "cancelled":
      return row.cancellationReason ?? "Cancelled";
  }
};

/**
 * The caption routes in both of Vedfolnir's shapes: the current ones (`/caption/...`) and the
 * legacy ones (`/start_caption_generation`, `/api/caption_generation/...`). Users see and act on
 * their own tasks only; another user's task is 404, like one that does not exist.
 */
export const captionRoutes = (router: Router, orm: MikroORM, tasks: TaskService): Router => {
  const withCaller =
    (handler: (request: Request, caller: Caller) => Promise<Reply>) =>
    async (request: Request): Promise<Reply> =>
      handler(request, await authenticate(orm, request.header("authorization")));

  const start = async (request: Request, caller: Caller) => {
    const submitted = await tasks.submit({
      ...submission(await request.body(), caller),
      requestId: request.id,
    });
    if (Either.isRight(submitted)) return submitted.right.taskId;
    const error = submitted.left;
    switch (error._tag) {
      case "InvalidTaskInput":
        throw invalid(error.details);
      case "NoPlatformConnection":
        throw new HttpError(400, "no_platform_connection", error.message);
      case "ActiveTaskExists":
        throw new HttpError(409, "active_task_exists", "you already have an active caption task", {
          task_id: error.activeTaskId,
        });
      case "SubmitRateLimited":
        throw rateLimited(error);
    }
  };

  const find = async (request: Request, caller: Caller) => {
    const row = await tasks.find(taskIdParam(request), caller);
    if (!row) throw notFound();
    return row;
  };

  const cancel = async (request: Request, caller: Caller) => {
    const taskId = taskIdParam(request);
    const body = await request.body();
    const reason = typeof body.reason === "string" && body.reason.trim() ? body.reason.trim() : undefined;
    const outcome = await tasks.cancel(taskId, caller, reason);
    if (Either.isLeft(outcome)) throw notFound();
    const answer = outcome.right;
    if (typeof answer === "object")
      throw new HttpError(409, "task_ended", `the task is already ${answer.ended}`, { status: answer.ended });
    return reply(200, {
      success: true,
      message: answer === "cancelled" ? "Task cancelled" : "Cancelling: the worker stops at its next step",
      status: answer,
    });
  };

  return router
    .add(
      "POST",
      "/caption/start",
      withCaller(async (request, caller) => {
        const taskId = await start(request, caller);
        return {
          ...reply(202, { success: true, message: "Caption generation started", data: { task_id: taskId } }),
          log: { task_id: taskId },
        };
      }),
    )
    .add(
      "POST",
      "/start_caption_generation",
      withCaller(async (request, caller) => {
        const taskId = await start(request, caller);
        return {
          ...reply(200, {
            success: true,
            task_id: taskId,
            message: "Caption generation started",
            redirect_url: `/caption/status/${taskId}`,
          }),
          log: { task_id: taskId },
        };
      }),
    )
    .add(
      "GET",
      "/caption/api/status/:id",
      withCaller(async (request, caller) => {
        const row = await find(request, caller);
        return reply(200, {
          success: true,
          status: row.status,
          progress: row.progressPercent,
          current_step: row.currentStep,
          message: statusMessage(row),
        });
      }),
    )
    .add(
      "GET",
      "/api/caption_generation/status/:id",
      withCaller(async (request, caller) => {
        const row = await find(request, caller);
        return reply(200, {
          success: true,
          status: {
            task_id: row.id,
            status: row.status,
            progress_percent: row.progressPercent,
            current_step: row.currentStep,
            created_at: iso(row.createdAt),
            started_at: iso(row.startedAt),
            completed_at: iso(row.completedAt),
            error_message: row.status === "failed" ? publicFailure(row.errorMessage).message : null,
            ...(row.status === "failed" ? { error_category: publicFailure(row.errorMessage).category } : {}),
            ...(row.status === "completed" ? { results: parseResults(row) } : {}),
          },
        });
      }),
    )
    .add("POST", "/caption/api/cancel/:id", withCaller(cancel))
    .add("POST", "/api/caption_generation/cancel/:id", withCaller(cancel))
    .add(
      "GET",
      "/api/caption_generation/results/:id",
      withCaller(async (request, caller) => {
        const row = await find(request, caller);
        if (row.status !== "completed")
          throw new HttpError(409, "not_completed", `the task is ${row.status}`, { status: row.status });
        return reply(200, { success: true, task_id: row.id, results: parseResults(row) });
      }),
    )
    .add(
      "POST",
      "/api/caption_generation/retry/:id",
      withCaller(async (request, caller) => {
        const retried = await tasks.retry(taskIdParam(request), caller, request.id);
        if (Either.isRight(retried))
          return {
            ...reply(202, { success: true, task_id: retried.right.taskId, message: "Retry started" }),
            log: { task_id: retried.right.taskId },
          };
        const error = retried.left;
        switch (error._tag) {
          case "TaskNotFound":
            throw notFound();
          case "TaskNotRetryable":
            throw new HttpError(409, "not_retryable", error.message, { status: error.status });
          case "ActiveTaskExists":
            throw new HttpError(409, "active_task_exists", "you already have an active caption task", {
              task_id: error.activeTaskId,
            });
          case "InvalidTaskInput":
            throw invalid(error.details);
          case "NoPlatformConnection":
            throw new HttpError(400, "no_platform_connection", error.message);
          case "SubmitRateLimited":
            throw rateLimited(error);
        }
      }),
    );
};
