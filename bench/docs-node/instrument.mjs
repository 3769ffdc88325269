// Telemetry for the "documented way" benchmark variant (bench/docs-node), preloaded with
// `node --import ./instrument.mjs server.cjs`, as each library's README or guide shows it:
// all four signals, every span kept, nothing tuned. The sample service (examples/api) is
// measured against this, on the same Node and the same library versions.
//
// - traces and logs: OpenTelemetry's NodeSDK (the getting-started entry point of OpenTelemetry
//   JS 3.x) with the OTLP/HTTP trace exporter (batched by the SDK), a BatchLogRecordProcessor +
//   OTLPLogExporter, and the http, express and pino instrumentations (pino's lines go to the
//   Logs API with the active span's trace id);
// - errors: @sentry/node with its default integrations and openTelemetryIntegration (the SDK's
//   own example for an existing OpenTelemetry setup), errors captured by
//   setupExpressErrorHandler (server.cjs);
// - metrics: prom-client (server.cjs).
//
// Endpoints, sampler and Sentry DSN/environment/release come from the standard variables
// (OTEL_EXPORTER_OTLP_*_ENDPOINT, OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME, SENTRY_*), which the
// SDKs read themselves. Metrics are prom-client's, so the SDK exports none (OTEL_METRICS_EXPORTER
// is set to none by the benchmark, as a user who scrapes /metrics would).
//
// The app is CommonJS (server.cjs), so the instrumentations patch express, http and pino as
// they are required; this file is ESM because @sentry/node wants its preload as --import.

import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { ExpressInstrumentation } from '@opentelemetry/instrumentation-express';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { PinoInstrumentation } from '@opentelemetry/instrumentation-pino';
import { BatchLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { NodeSDK } from '@opentelemetry/sdk-node';
import * as Sentry from '@sentry/node';

const sdk = new NodeSDK({
  traceExporter: new OTLPTraceExporter(),
  logRecordProcessors: [new BatchLogRecordProcessor(new OTLPLogExporter())],
  instrumentations: [new HttpInstrumentation(), new ExpressInstrumentation(), new PinoInstrumentation()],
});
sdk.start();

Sentry.init({
  dsn: process.env.SENTRY_DSN,
  integrations: [Sentry.openTelemetryIntegration()],
});

// Flush what is queued on the way out, as the SDKs' shutdown docs show.
process.once('SIGTERM', () => {
  Promise.allSettled([sdk.shutdown(), Sentry.close(2000)]).finally(() => process.exit(0));
});
