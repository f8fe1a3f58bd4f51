/**
 * Getting a post's image from a remote server into the shape a caption engine wants (`CaptionRequest`
 * in ./engine.ts: a JPEG at most 1024x1024). Both halves throw `JobFailure` with the kind that decides
 * the retry (src/queue/failures.ts): `invalid` for what no retry can fix (404, not an image, too big),
 * `unavailable` for a server that is down or asks us to back off, `transient` for a blip.
 */
import sharp, { type Metadata, type Sharp } from "sharp";
import { invalidInput, JobFailure, unavailable } from "../queue/failures.js";
import { decodeHeic } from "./heic.js";
import { SNIFF_BYTES, sniffImageType } from "./image-sniff.js";
import { errorCodes, UNREACHABLE_CODES } from "./network-errors.js";

const MiB = 1024 * 1024;

export interface DownloadOptions {
  /** The job's signal: when it aborts, its reason is thrown as is, so the caller can tell cancel from failure. */
  readonly signal: AbortSignal;
  /** For the whole download, headers and body. */
  readonly timeoutMs?: number;
  /** The body may not be longer than this (counted after any Content-Encoding is undone). */
  readonly maxBytes?: number;
  /** Defaults to the global fetch; for a fetch with a custom dispatcher (proxy, DNS pinning). */
  readonly fetch?: typeof fetch;
}

export interface DownloadedImage {
  readonly bytes: Buffer;
  /** What the bytes are (from their magic bytes), e.g. `image/png`, whatever the server said. */
  readonly contentType: string;
}

/**
 * The URL as it may appear in messages and logs: no query string or fragment (signed media URLs carry
 * tokens there) and no user:password.
 */
const redact = (url: URL) => `${url.protocol}//${url.host}${url.pathname}`;

const describeSize = (bytes: number) =>
  bytes >= MiB
    ? `${+(bytes / MiB).toFixed(1)} MB`
    : bytes >= 1024
      ? `${+(bytes / 1024).toFixed(1)} KB`
      : `${bytes} bytes`;

/** Codes (from Node's net/dns/tls and undici) that say the server is not there; worth a slow retry. */
const UNAVAILABLE_CODES = new Set([
  ...UNREACHABLE_CODES,
  // A broken certificate is the remote admin's to fix, which takes a while: back off like for an outage.
  "CERT_HAS_EXPIRED",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

const messageChain = (error: unknown, depth = 0): string =>
  depth > 5 || !(error instanceof Error)
    ? ""
    : `${error.message}${error.cause instanceof Error ? `: ${messageChain(error.cause, depth + 1)}` : ""}`;

const statusFailure = (response: Response, where: string) => {
  const status = `${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
  const message = `${where} answered ${status}`;
  // 429 and 503 are the server asking us to come back later; back off slowly.
  if (response.status === 429 || response.status === 503) return unavailable(message);
  // Other 5xx (and 408, the server giving up on a slow request) are blips: retry soon.
  if (response.status >= 500 || response.status === 408) return new JobFailure("transient", message);
  // 404/410 (deleted post), 403 (private or expired link), any other 4xx, and the odd 3xx fetch did not
  // follow (no Location): asking again gets the same answer.
  return invalidInput(message);
};

/**
 * Download one image. Throws `JobFailure` (see the module comment), or the caller's `signal.reason` when
 * the caller aborted. Redirects are followed (fetch's default, at most 20).
 */
export async function downloadImage(url: string, options: DownloadOptions): Promise<DownloadedImage> {
  const { signal, timeoutMs = 30_000, maxBytes = 20 * MiB, fetch: fetchImpl = fetch } = options;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    // Cut at '?' ourselves: an unparsable URL may still carry a token.
    throw invalidInput(`not a valid URL: ${JSON.stringify(url.split("?")[0]?.slice(0, 200))}`, error);
  }
  const where = redact(parsed);
  // Not file:, data:, ftp: or anything else a post could smuggle in: we fetch from the web only.
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw invalidInput(`only http and https image URLs are supported, not ${parsed.protocol} (${where})`);
  }
  signal.throwIfAborted();
  const limit = describeSize(maxBytes);
  const tooLarge = (detail: string) => invalidInput(`${where} is larger than ${limit} (${detail})`);

  // Our own aborts: the timeout, and giving up on a body that is too large or not an image. Aborting
  // the fetch (not just cancelling the reader) makes undici drop the connection at once.
  const internal = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    internal.abort(new Error(`timed out after ${timeoutMs} ms`));
  }, timeoutMs);
  const combined = AbortSignal.any([signal, internal.signal]);

  try {
    const response = await fetchImpl(parsed, {
      signal: combined,
      redirect: "follow",
      headers: { accept: "image/*", "user-agent": "Ratatoskr alt-text (+image captions)" },
    });
    if (!response.ok) {
      // Let go of the error page without reading it; the connection may be reused.
      response.body?.cancel().catch(() => {});
      throw statusFailure(response, where);
    }

    // A declared length over the limit: refuse before reading a byte of the body.
    const declared = response.headers.get("content-length");
    if (declared !== null && /^\d+$/.test(declared.trim()) && Number(declared) > maxBytes) {
      internal.abort(new Error("too large"));
      throw tooLarge(`Content-Length ${describeSize(Number(declared))}`);
    }

    const declaredType = (response.headers.get("content-type") ?? "none").split(";")[0]!.trim().toLowerCase();
    const body = response.body;
    if (body === null) throw invalidInput(`${where} answered ${response.status} with no body`);

    // Count while streaming: Content-Length may be missing (chunked) or wrong (compressed bodies, bugs),
    // so the limit holds on what actually arrives, and we stop the moment it is passed.
    const chunks: Uint8Array[] = [];
    let received = 0;
    let sniffed: string | undefined;
    const reader = body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (!done) {
        received += value.byteLength;
        if (received > maxBytes) {
          internal.abort(new Error("too large"));
          throw tooLarge("the body went past the limit");
        }
        chunks.push(value);
      }
      // Sniff as soon as there are enough bytes (or the body ended): an HTML page is refused after its
      // first packet, not after 20 MB of it.
      if (sniffed === undefined && (done || received >= SNIFF_BYTES)) {
        const head = Buffer.concat(chunks, Math.min(received, SNIFF_BYTES));
        sniffed = sniffImageType(head)?.mime;
        if (sniffed === undefined) {
          internal.abort(new Error("not an image"));
          const said = declaredType.startsWith("image/")
            ? `says ${declaredType} but`
            : `is ${declaredType} and`;
          throw invalidInput(
            received === 0
              ? `${where} answered an empty body`
              : `${where} ${said} is not an image we can read`,
          );
        }
      }
      if (done) break;
    }
    return { bytes: Buffer.concat(chunks, received), contentType: sniffed! };
  } catch (error) {
    // The caller's cancel wins over anything else that went wrong meanwhile: rethrow its reason as is.
    if (signal.aborted) throw signal.reason;
    if (error instanceof JobFailure) throw error;
    if (timedOut) throw new JobFailure("transient", `downloading ${where} timed out after ${timeoutMs} ms`);
    const codes = errorCodes(error);
    const detail = messageChain(error) || String(error);
    if (codes.some((code) => UNAVAILABLE_CODES.has(code))) {
      throw unavailable(`cannot reach ${where}: ${detail}`, error);
    }
    // Redirected in circles (fetch gives up after 20) or to file:/data:/ftp:: the link itself is bad.
    if (/redirect count exceeded|scheme must be a HTTP/i.test(detail)) {
      throw invalidInput(`${where} redirects in a loop or away from http(s): ${detail}`, error);
    }
    // Resets (ECONNRESET, undici's "terminated"/"other side closed"), TLS hiccups and anything unknown:
    // a blip until proven otherwise.
    throw new JobFailure("transient", `downloading ${where} failed: ${detail}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
}

export interface PrepareOptions {
  /** Longest side of the result; smaller images are not enlarged. */
  readonly maxSide?: number;
  /** JPEG quality, 1-100. */
  readonly quality?: number;
  /** Refuse images with more pixels than this (decompression bombs): 100 megapixels by default. */
  readonly maxInputPixels?: number;
}

export interface PreparedImage {
  /** Baseline-compatible sRGB JPEG, no metadata (EXIF with GPS is dropped on the way). */
  readonly jpeg: Buffer;
  readonly width: number;
  readonly height: number;
  /** jpeg, png, webp, gif, tiff, avif or heic/heif. */
  readonly originalFormat: string;
  /** As displayed, i.e. after EXIF orientation (and of the first frame of an animation). */
  readonly originalWidth: number;
  readonly originalHeight: number;
}

/** What we let sharp decode: photo formats. Not SVG (a renderer, with its own attack surface) or others. */
const ACCEPTED_FORMATS = new Set(["jpeg", "png", "webp", "gif", "tiff", "heif"]);

/** The last meaningful line of a libvips error; the lines before are often "source: bad seek" noise. */
const vipsReason = (error: unknown) => {
  const text = error instanceof Error ? error.message : String(error);
  const lines = text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
  return (lines.at(-1) ?? "unknown error").slice(0, 300);
};

const decodeFailure = (error: unknown, format: string | undefined) => {
  const reason = vipsReason(error);
  if (/exceeds pixel limit/i.test(reason))
    return invalidInput(`the image has too many pixels (${reason})`, error);
  if (/unsupported image format/i.test(reason)) return invalidInput("not an image format we can read", error);
  // Not the image's fault: let the queue requeue the job later (failures.ts "exhausted").
  if (/out of memory|vips_malloc|cannot allocate/i.test(reason)) {
    return new JobFailure("exhausted", `out of memory decoding the image: ${reason}`, { cause: error });
  }
  return invalidInput(`cannot decode the ${format ?? ""} image, it is broken or truncated: ${reason}`, error);
};

/**
 * Decode `bytes`, auto-orient by EXIF, fit inside `maxSide` x `maxSide` (never enlarging), flatten
 * transparency onto white and encode as JPEG. Animated GIF/WebP give their first frame. Throws
 * `JobFailure` invalid for anything that is not a readable, reasonably sized image.
 */
export async function prepareForModel(bytes: Buffer, options: PrepareOptions = {}): Promise<PreparedImage> {
  const { maxSide = 1024, quality = 85, maxInputPixels = 100_000_000 } = options;
  if (!Number.isInteger(maxSide) || maxSide < 1) throw new RangeError(`maxSide must be a positive integer`);
  if (!Number.isInteger(quality) || quality < 1 || quality > 100)
    throw new RangeError(`quality must be 1-100`);

  // failOn "warning" is sharp's advice for untrusted input: a truncated or corrupt file is refused
  // rather than captioned with a grey bottom half. limitInputPixels makes libvips itself refuse a
  // bomb from the header, before allocating; we check the header first too, for a clearer message.
  const input = { failOn: "warning", limitInputPixels: maxInputPixels } as const;

  let metadata: Metadata;
  try {
    // Header only; cheap, and no pixels are decoded.
    metadata = await sharp(bytes, { ...input, limitInputPixels: false }).metadata();
  } catch (error) {
    throw decodeFailure(error, undefined);
  }
  if (!ACCEPTED_FORMATS.has(metadata.format)) {
    throw invalidInput(`${metadata.format} images are not supported`);
  }
  // HEIF is a container: AV1 inside is AVIF, HEVC inside is HEIC (iPhone photos).
  const originalFormat =
    metadata.format === "heif"
      ? metadata.compression === "av1"
        ? "avif"
        : metadata.compression === "hevc"
          ? "heic"
          : "heif"
      : metadata.format;
  // For an animation, width x height is one frame (sharp reads the first page by default), which is
  // also what is decoded below.
  const pixels = metadata.width * metadata.height;
  if (pixels > maxInputPixels) {
    throw invalidInput(
      `the image is ${metadata.width}x${metadata.height} (${Math.round(pixels / 1e6)} megapixels), more than ` +
        `the ${Math.round(maxInputPixels / 1e6)} megapixel limit`,
    );
  }

  // sharp has no HEVC decoder: HEIC pixels come from libheif (wasm), then go the same way.
  let source: Sharp;
  if (originalFormat === "heic") {
    try {
      const decoded = await decodeHeic(bytes);
      source = sharp(Buffer.from(decoded.data.buffer, decoded.data.byteOffset, decoded.data.byteLength), {
        raw: { width: decoded.width, height: decoded.height, channels: 4 },
      });
    } catch (error) {
      throw invalidInput(
        `cannot decode the HEIC image, it is broken or truncated: ${vipsReason(error)}`,
        error,
      );
    }
  } else {
    source = sharp(bytes, { ...input, autoOrient: true });
  }

  try {
    const { data, info } = await source
      .resize({ width: maxSide, height: maxSide, fit: "inside", withoutEnlargement: true })
      // JPEG has no alpha; white is what a transparent PNG looks like on most timelines.
      .flatten({ background: "#ffffff" })
      // CMYK, 16-bit and greyscale all become plain 8-bit sRGB, which every model reads.
      .toColourspace("srgb")
      // The prebuilt libvips is linked with mozjpeg; this asks for its settings (smaller files).
      .jpeg({ quality, mozjpeg: true })
      .toBuffer({ resolveWithObject: true });
    return {
      jpeg: data,
      width: info.width,
      height: info.height,
      originalFormat,
      originalWidth: metadata.autoOrient.width,
      originalHeight: metadata.autoOrient.height,
    };
  } catch (error) {
    throw decodeFailure(error, originalFormat);
  }
}
