// Telemetry bootstrap, preloaded before the application: `node --import ./src/instrument.mjs src/server.mjs`.
//
// Order matters: the ESM loader hook and the instrumentations must be in place before express,
// pino and node:http are first imported, or those modules are not patched. So only modules that
// are never instrumented are imported statically here; the rest are imported dynamically below.

import { register } from 'node:module';

import { createAddHookMessageChannel } from 'import-in-the-middle';

import { loadConfigOrExit } from './config.mjs';

// Fail fast, naming every offending variable, before anything starts.
const config = loadConfigOrExit();

// Only modules something hooks are wrapped (not every import), which keeps start-up fast.
const { registerOptions, waitForAllMessagesAcknowledged } = createAddHookMessageChannel();
register('import-in-the-middle/hook.mjs', import.meta.url, registerOptions);

const { registerInstrumentations } = await import('@opentelemetry/instrumentation');
const { HttpInstrumentation } = await import('@opentelemetry/instrumentation-http');
const { PinoInstrumentation } = await import('@opentelemetry/instrumentation-pino');
const { ignoredOutgoingRequest } = await import('./tracing-filters.mjs');

registerInstrumentations({
  instrumentations: [
    // Outgoing requests only (the probes' client spans, traceparent and sentry-trace injection).
    // Server spans come from the app's own middleware (src/request-telemetry.mjs): the incoming
    // side of this instrumentation, with the Express instrumentation for the route, made a traced
    // request cost half as much again (measured in request-telemetry.mjs).
    new HttpInstrumentation({
      disableIncomingRequestInstrumentation: true,
      ignoreOutgoingRequestHook: ignoredOutgoingRequest(config),
    }),
    // Adds trace_id/span_id to every pino line and sends the (already scrubbed) line to the
    // OTel Logs API as well as stdout.
    new PinoInstrumentation(),
  ],
});
await waitForAllMessagesAcknowledged();

const { initSentry, sentryOtlpTraces } = await import('./sentry.mjs');
const { startOpenTelemetry } = await import('./otel.mjs');
const { setTelemetry } = await import('./runtime.mjs');

initSentry(config);
setTelemetry({
  config,
  otel: startOpenTelemetry(config, { sentryOtlp: sentryOtlpTraces(config.sentry.dsn) }),
});
