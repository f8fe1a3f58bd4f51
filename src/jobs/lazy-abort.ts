import { describeFailure } from "../queue/failures.js";

/**
 * A job's abort, as its handler sees it (the engine's job context; a job in a worker thread):
 * an AbortController made only when the handler reads its signal. Most handlers never do, and
 * one controller per job cost more than the rest of the job's bookkeeping in the engine. Its
 * state is private (`#`) and `abort` static: a handler can read its abort but not cause one.
 * `onAbort` is a getter that hands out a function bound to the job, so it may be destructured
 * like `signal`, and costs nothing unless read.
 */
export class LazyAbort {
  #controller: AbortController | undefined;
  #listeners: Array<(reason: unknown) => void> | undefined;
  #aborted = false;
  #reason: unknown;

  get aborted(): boolean {
    return this.#aborted;
  }

  get reason(): unknown {
    return this.#reason;
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  get onAbort(): (listener: (reason: unknown) => void) => () => void {
    return (listener) => this.#listen(listener);
  }

  #listen(listener: (reason: unknown) => void): () => void {
    if (this.#aborted) {
      LazyAbort.#call(listener, this.#reason);
      return () => {};
    }
    (this.#listeners ??= []).push(listener);
    return () => {
      const at = this.#listeners?.indexOf(listener) ?? -1;
      if (at >= 0) this.#listeners!.splice(at, 1);
    };
  }

  /**
   * A job's abort as a LazyAbort: the engine hands each handler its job's own as the context; any
   * other abort is followed by a new one.
   */
  static of(context: { readonly onAbort: (listener: (reason: unknown) => void) => () => void }): LazyAbort {
    if (context instanceof LazyAbort) return context;
    const abort = new LazyAbort();
    context.onAbort((reason) => LazyAbort.abort(abort, reason));
    return abort;
  }

  static abort(job: LazyAbort, reason: unknown): void {
    if (job.#aborted) return;
    job.#aborted = true;
    job.#reason = reason;
    job.#controller?.abort(reason);
    const listeners = job.#listeners;
    if (!listeners) return;
    for (const listener of [...listeners]) {
      // One that an earlier listener removed is not called, as with an AbortSignal.
      if (listeners.includes(listener)) LazyAbort.#call(listener, reason);
    }
    job.#listeners = undefined;
  }

  /** As the worker's event listeners: one that throws stops neither the others nor the abort. */
  static #call(listener: (reason: unknown) => void, reason: unknown) {
    try {
      listener(reason);
    } catch (error) {
      console.error(`a job's abort listener threw: ${describeFailure(error)}`);
    }
  }
}
