// The hand-written telemetry pieces were measured against, or reach into, exact library versions.
// Each case fails when its library's installed version changes, naming what to re-check before the
// pin is moved: whether the piece still behaves the same, and (for the pieces kept for their cost)
// whether it still saves at least 10% of a request, which `make bench` measures against the stock
// variants in bench/stock-node (the figures are in each piece's header comment).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

// [package, the version the piece was written and measured against, what to re-check]
const PINS = [
  [
    '@opentelemetry/instrumentation-http',
    '0.301.2',
    'src/request-telemetry.mjs replaces its incoming side (disabled in src/instrument.mjs): does the ' +
      'server span still carry the same attributes, and does the piece still save >= 10% (make bench)?',
  ],
  [
    '@opentelemetry/instrumentation-express',
    '0.72.0',
    'src/request-telemetry.mjs replaces it (bench/stock-node/request-telemetry*.mjs use it): re-measure',
  ],
  [
    'express',
    '5.3.0',
    'src/request-telemetry.mjs reads the route template from req.route and req.baseUrl once the response closes',
  ],
  [
    'prom-client',
    '15.1.3',
    'src/metrics.mjs renderMetrics: does rendering OpenMetrics still strip `_total` from counter names in place?',
  ],
  [
    '@opentelemetry/sdk-trace',
    '3.1.1',
    'src/otel.mjs counts a full queue through the BatchSpanProcessor selfObsMeterProvider option ' +
      '(experimental): is it still there, still a counter with error.type=queue_full?',
  ],
  [
    '@opentelemetry/sdk-logs',
    '3.1.1',
    'src/otel.mjs counts a full queue through the BatchLogRecordProcessor selfObsMeterProvider option ' +
      '(experimental): is it still there, still a counter with error.type=queue_full?',
  ],
  [
    '@sentry/node',
    '11.12.0',
    'src/sentry-requests.mjs (Http and Express integrations off, errors captured by expressErrorHandler ' +
      'in a scope withRequestScope makes): do the integrations still have these names and jobs? ' +
      'Re-measure it (make bench)',
  ],
  [
    '@sentry/core',
    '11.12.0',
    'src/sentry-requests.mjs withRequestScope: does RequestData still read the normalizedRequest processing ' +
      'metadata, in the shape httpRequestToRequestData makes?',
  ],
  [
    '@sentry/opentelemetry',
    '11.12.0',
    "src/otel.mjs _SentryTracePropagator: does SentryPropagator still inject nothing with our own tracer provider, " +
      'and still extract sentry-trace (sampled and not) as before?',
  ],
];

function installedVersion(name) {
  const manifest = new URL(`../node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(manifest, 'utf8')).version;
}

describe('libraries the hand-written pieces rely on', () => {
  for (const [name, pinned, recheck] of PINS) {
    it(`${name} is ${pinned}`, () => {
      assert.equal(installedVersion(name), pinned, `${name} changed: re-check ${recheck}`);
    });
  }
});
