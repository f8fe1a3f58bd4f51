import { Data } from "effect";

/** Redis did not answer or answered with an error; `operation` names what we were doing. */
export class RedisError extends Data.TaggedError("RedisError")<{
  readonly operation: string;
  readonly cause: unknown;
}> {
  override get message() {
    const cause = this.cause instanceof Error ? this.cause.message : String(this.cause);
    return `redis ${this.operation} failed: ${cause}`;
  }
}

/**
 * Redis's answer for a key that holds another type than the command reads: a damaged key, which
 * callers treat as that one key's problem. Takes the reply error itself or a RedisError around it.
 */
export const isWrongType = (error: unknown): boolean => {
  const reply = error instanceof RedisError ? error.cause : error;
  return reply instanceof Error && reply.message.startsWith("WRONGTYPE");
};

/**
 * A job's live state that does not parse (damage, or a value the scripts never write): like a
 * key of the wrong type, that one job's problem.
 */
export class UnreadableLiveState extends Error {
  constructor(
    readonly taskId: string,
    bytes: number,
  ) {
    super(`job ${taskId}: its live state (${bytes} bytes) does not parse`);
    this.name = "UnreadableLiveState";
  }
}

/** A job whose Redis data cannot be read: a key of the wrong type, or a live state that does not parse. */
export const isUnreadableJob = (error: unknown): boolean => {
  const cause = error instanceof RedisError ? error.cause : error;
  return isWrongType(error) || cause instanceof UnreadableLiveState;
};

/** The user already has a task queued or running; `activeTaskId` names it. */
export class ActiveTaskExists extends Data.TaggedError("ActiveTaskExists")<{
  readonly userId: string;
  readonly activeTaskId: string;
}> {
  override get message() {
    return `user ${this.userId} already has an active task (${this.activeTaskId})`;
  }
}

export class DuplicateTask extends Data.TaggedError("DuplicateTask")<{ readonly taskId: string }> {
  override get message() {
    return `task ${this.taskId} is already in the queue`;
  }
}

export class TaskNotFound extends Data.TaggedError("TaskNotFound")<{ readonly taskId: string }> {
  override get message() {
    return `no task ${this.taskId} in the queue`;
  }
}

/** A job given to the queue that the queue refuses to store (bad id, priority, attempts, delay). */
export class InvalidJob extends Data.TaggedError("InvalidJob")<{ readonly reason: string }> {
  override get message() {
    return `invalid job: ${this.reason}`;
  }
}
