import {
  type Context,
  context,
  INVALID_SPAN_CONTEXT,
  propagation,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";

/**
 * OpenTelemetry traces of a task's way through the queue: `enqueue` (where it was submitted),
 * then, in the process that runs it, `claim` (the whole attempt), with `run` (on the thread pool)
 * and `complete` / `fail` (the queue's answer) under it. The context crosses Redis in the job's
 * `meta` (a W3C traceparent), so a trace spans the web server and the supervisor.
 *
 * Off by default: with no provider installed every span is a no-op. `OTEL_TRACES_EXPORTER=otlp`
 * (the OTLP/HTTP exporter, configured by the standard OTEL_EXPORTER_OTLP_* variables) or
 * `console` turns it on, with OTEL_SERVICE_NAME naming the service (`startTracing`,
 * tracing-setup.ts). This module needs only OpenTelemetry's API: the worker threads that claim
 * for themselves import it, and need no SDK.
 */
export const tracer = () => trace.getTracer("ratatoskr");

/**
 * Whether a tracer provider is installed, here (`startTracing`) or by the application this runs
 * in (one that samples nothing counts too). Where none is, per-job spans are skipped altogether:
 * even no-op ones cost the hot path a context and three spans a job.
 */
export const tracingOn = (): boolean => {
  const provider = trace.getTracerProvider();
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegateTracer("ratatoskr") !== undefined;
};

/** A span that records nothing, for where tracing is off. */
export const NO_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** The trace context a job carries across Redis: its traceparent, when a trace is recorded. */
export const traceparentOf = (span: Span): string | undefined => {
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(ROOT_CONTEXT, span), carrier);
  return carrier.traceparent;
};

/** The context a job's traceparent names (the root one when it has none). */
export const contextFrom = (traceparent: string | undefined): Context =>
  traceparent === undefined ? ROOT_CONTEXT : propagation.extract(ROOT_CONTEXT, { traceparent });

export const startSpan = (
  name: string,
  options: { kind?: SpanKind; attributes?: Record<string, string | number>; startTime?: number },
  parent: Context = context.active(),
): Span => tracer().startSpan(name, options, parent);

/** Ends a span as failed, with the reason. */
export const endFailed = (span: Span, message: string): void => {
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  span.end();
};

export { SpanKind, trace };
