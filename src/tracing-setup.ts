import { propagation, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";

// The SDK, apart from tracing.ts: only the process that starts the runtime installs a provider.
let installed: BasicTracerProvider | undefined;

/** Installs the process's tracer provider once, as the environment asks; safe to call again. */
export const startTracing = (env: {
  readonly OTEL_TRACES_EXPORTER?: string | undefined;
  readonly OTEL_SERVICE_NAME?: string | undefined;
}): void => {
  const kind = env.OTEL_TRACES_EXPORTER;
  if (installed || kind === undefined || kind === "none") return;
  const exporter: SpanExporter = kind === "console" ? new ConsoleSpanExporter() : new OTLPTraceExporter();
  installed = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": env.OTEL_SERVICE_NAME ?? "ratatoskr" }),
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
  trace.setGlobalTracerProvider(installed);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
};

/** Sends the spans still buffered (at shutdown). */
export const flushTracing = async (): Promise<void> => {
  await installed?.forceFlush();
};
