// Prometheus metrics. Names and labels are shared with the FastAPI service: dashboards and alert
// rules query both services with the same expressions.

import client from 'prom-client';

const { Counter, Gauge, Histogram, Registry } = client;

// Set at start-up when spans are exported: only then do exemplars lead anywhere.
let _tracesExported = false;

// The FastAPI service's buckets (examples/contract.yaml), so both services' histograms aggregate
// together: 5 ms to 30 s, the server's request timeout.
const _HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const _PROBE_BUCKETS = [..._HTTP_BUCKETS, 60];
export const SIGNALS = Object.freeze(['traces', 'logs', 'errors']);

// Exemplars only exist in the OpenMetrics format, so every metric lives in an OpenMetrics registry;
// plain Prometheus text is rendered from it on demand (see renderMetrics).
export const registry = new Registry(Registry.OPENMETRICS_CONTENT_TYPE);
client.collectDefaultMetrics({ register: registry });

// The per-request RED metrics, recorded by recordHttpRequest (request-telemetry.mjs).
const _httpLabels = ['method', 'route', 'status_class'];

const _httpRequests = new Counter({
  name: 'http_server_requests_total',
  help: 'HTTP requests served, by route template (never the raw path).',
  labelNames: _httpLabels,
  registers: [registry],
});

const _httpDuration = new Histogram({
  name: 'http_server_request_duration_seconds',
  help: 'Time to serve an HTTP request; exemplars carry the trace id.',
  labelNames: _httpLabels,
  buckets: _HTTP_BUCKETS,
  enableExemplars: true,
  registers: [registry],
});

/**
 * Counts one served request and its duration. A failed request whose sampled trace is exported
 * becomes the exemplar of its bucket: the collector's tail sampling keeps every trace with an
 * error, so each exemplar opens a trace that exists (a plain request's trace is kept only by
 * chance).
 * @param {string} method @param {string} route the route template @param {string} statusClass
 * @param {number} seconds @param {import('@opentelemetry/api').SpanContext | undefined} spanContext
 */
export function recordHttpRequest(method, route, statusClass, seconds, spanContext) {
  const labels = { method, route, status_class: statusClass };
  _httpRequests.inc(labels);
  _httpDuration.observe({
    labels,
    value: seconds,
    exemplarLabels: statusClass === '5xx' ? exemplarFor(spanContext) : {},
  });
}

export const buildInfo = new Gauge({
  name: 'app_build_info',
  help: 'Always 1; labels name the running build.',
  labelNames: ['version', 'commit', 'service'],
  registers: [registry],
});

export const telemetryDropped = new Counter({
  name: 'telemetry_dropped_total',
  help: 'Telemetry items dropped instead of delaying requests, by signal and reason.',
  labelNames: ['signal', 'reason'],
  registers: [registry],
});
// Present from start-up, so rate() and the loss alert work before the first loss.
for (const signal of SIGNALS) {
  telemetryDropped.inc({ signal, reason: 'queue_full' }, 0);
}
// The same counts, readable at once (prom-client's own are read asynchronously).
const _droppedTotals = Object.fromEntries(SIGNALS.map((signal) => [signal, 0]));

export const probeSuccess = new Gauge({
  name: 'probe_success',
  help: '1 if the last probe of the target succeeded, else 0.',
  labelNames: ['target'],
  registers: [registry],
});

export const probeDuration = new Histogram({
  name: 'probe_duration_seconds',
  help: 'Duration of probes (until the response body ended, or the failure); exemplars carry the trace id.',
  labelNames: ['target'],
  buckets: _PROBE_BUCKETS,
  enableExemplars: true,
  registers: [registry],
});

export const probeHttpStatus = new Gauge({
  name: 'probe_http_status',
  help: 'HTTP status of the last probe of the target; 0 when no response arrived.',
  labelNames: ['target'],
  registers: [registry],
});

/**
 * Counts `count` items of `signal` (traces|logs|errors) as dropped, for `reason`: a bounded word
 * such as `queue_full` (a full queue: the default), `stdout_buffer_full`, `backpressure`, a
 * failed export's error type or Sentry's loss reason.
 */
export function countDropped(signal, count = 1, reason = 'queue_full') {
  if (count > 0) {
    telemetryDropped.inc({ signal, reason }, count);
    _droppedTotals[signal] += count;
  }
}

/** Items of each signal dropped so far, whatever the reason: { traces, logs, errors }. */
export function droppedTotals() {
  return { ..._droppedTotals };
}

/** Called at start-up when spans are exported: only then do exemplars lead anywhere. */
export function enableExemplars() {
  _tracesExported = true;
}

/** Whether exemplars are served (spans are exported), for the start-up line. */
export function exemplarsEnabled() {
  return _tracesExported;
}

/** Exemplar labels for a span context, or none when the trace will not be stored. */
export function exemplarFor(spanContext) {
  // An unsampled or unexported trace can never be found: its exemplar would be a dead link.
  if (!_tracesExported || !spanContext || (spanContext.traceFlags & 1) === 0) {
    return {};
  }
  return { trace_id: spanContext.traceId };
}

/**
 * Renders every metric, as OpenMetrics (with exemplars) when the scraper accepts it, else as
 * Prometheus text 0.0.4.
 * @param {string | undefined} accept the request's Accept header
 */
export async function renderMetrics(accept) {
  if (accept?.includes('application/openmetrics-text')) {
    return { contentType: registry.contentType, body: await registry.metrics() };
  }
  // Rendering OpenMetrics strips `_total` from counter names in place (prom-client 15), so the
  // text registry gets views that restore the Prometheus name instead of the metric objects.
  const text = new Registry(Registry.PROMETHEUS_CONTENT_TYPE);
  for (const metric of registry.getMetricsAsArray()) {
    text.registerMetric({ name: metric.name, get: () => _prometheusView(metric) });
  }
  return { contentType: text.contentType, body: await text.metrics() };
}

async function _prometheusView(metric) {
  const data = await metric.get();
  if (data.type === 'counter' && !data.name.endsWith('_total')) {
    return { ...data, name: `${data.name}_total` };
  }
  return data;
}
