/**
 * What every caption engine does: describe one prepared image (JPEG, at most 1024x1024).
 * Engines throw `JobFailure` (src/queue/failures.ts) with the kind that decides the retry:
 * `unavailable` (connection refused, 503), `transient` (timeout, reset, other 5xx), `invalid`
 * (4xx, an image the model cannot read). Anything else they throw counts as transient.
 */
export interface CaptionRequest {
  /** The image, already resized and re-encoded as JPEG. */
  readonly jpeg: Buffer;
  readonly width: number;
  readonly height: number;
  readonly signal: AbortSignal;
}

export interface CaptionAnswer {
  /** The model's raw text; cleaning (first line, length, suffix) is done by the caller. */
  readonly text: string;
  /** The prompt that produced it (kept on the image row for review). */
  readonly prompt: string;
  /** Which model (or engine) answered. */
  readonly model: string;
}

export interface CaptionEngine {
  readonly name: string;
  describe(request: CaptionRequest): Promise<CaptionAnswer>;
}
