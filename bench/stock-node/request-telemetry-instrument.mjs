// Stock variant of examples/api/src/instrument.mjs for the `request-telemetry` piece (see
// register.mjs): server spans from @opentelemetry/instrumentation-http's incoming side and
// @opentelemetry/instrumentation-express, as their READMEs show, instead of the service's own
// middleware. Everything else is as in the service's instrument.mjs.

import { register } from 'node:module';

import { createAddHookMessageChannel } from 'import-in-the-middle';

import { loadConfigOrExit } from './config.mjs';

const config = loadConfigOrExit();

const { registerOptions, waitForAllMessagesAcknowledged } = createAddHookMessageChannel();
register('import-in-the-middle/hook.mjs', import.meta.url, registerOptions);

const { registerInstrumentations } = await import('@opentelemetry/instrumentation');
const { ExpressInstrumentation } = await import('@opentelemetry/instrumentation-express');
const { HttpInstrumentation } = await import('@opentelemetry/instrumentation-http');
const { PinoInstrumentation } = await import('@opentelemetry/instrumentation-pino');
const { ignoredOutgoingRequest, isUntracedPath } = await import('./tracing-filters.mjs');

registerInstrumentations({
  instrumentations: [
    new HttpInstrumentation({
      ignoreIncomingRequestHook: (request) => isUntracedPath(request.url ?? '/'),
      ignoreOutgoingRequestHook: ignoredOutgoingRequest(config),
    }),
    new ExpressInstrumentation(),
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
