import { Data } from "effect";

export class InvalidTaskInput extends Data.TaggedError("InvalidTaskInput")<{
  readonly details: ReadonlyArray<{ readonly field: string; readonly message: string }>;
}> {
  override get message() {
    return `invalid task: ${this.details.map((d) => `${d.field}: ${d.message}`).join("; ")}`;
  }
}

export class NoPlatformConnection extends Data.TaggedError("NoPlatformConnection")<{
  readonly userId: number;
  readonly platformConnectionId: number | undefined;
}> {
  override get message() {
    return this.platformConnectionId === undefined
      ? `user ${this.userId} has no active platform connection`
      : `platform connection ${this.platformConnectionId} is not an active connection of user ${this.userId}`;
  }
}

/** The user submitted as many tasks as the window allows; the next fits in `retryAfterSeconds`. */
export class SubmitRateLimited extends Data.TaggedError("SubmitRateLimited")<{
  readonly userId: number;
  readonly limit: number;
  readonly windowSeconds: number;
  readonly retryAfterSeconds: number;
}> {
  override get message() {
    return `at most ${this.limit} tasks per ${this.windowSeconds} s: try again in ${this.retryAfterSeconds} s`;
  }
}

/** Unknown, or not the caller's: the two are not told apart, so nobody learns of others' tasks. */
export class TaskNotFound extends Data.TaggedError("TaskNotFound")<{ readonly taskId: string }> {
  override get message() {
    return `no task ${this.taskId}`;
  }
}

export class TaskNotRetryable extends Data.TaggedError("TaskNotRetryable")<{
  readonly taskId: string;
  readonly status: string;
}> {
  override get message() {
    return `task ${this.taskId} is ${this.status}; only failed or cancelled tasks can be retried`;
  }
}

export class TaskNotWaiting extends Data.TaggedError("TaskNotWaiting")<{
  readonly taskId: string;
  readonly status: string;
}> {
  override get message() {
    return `task ${this.taskId} is ${this.status}; only a waiting task can change priority`;
  }
}
