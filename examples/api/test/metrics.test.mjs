// The per-request HTTP metrics are kept by hand (metrics.mjs) for speed; they must render exactly
// as prom-client's own Counter and Histogram do for the same requests, in both formats.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import client from 'prom-client';
import { parse } from 'yaml';

import { enableExemplars, recordHttpRequest, renderMetrics } from '../src/metrics.mjs';

// The buckets both services share (examples/contract.yaml).
const CONTRACT = parse(readFileSync(new URL('../../contract.yaml', import.meta.url), 'utf8'));
const BUCKETS = CONTRACT.metrics.http_server_request_duration_seconds.buckets;

// A small deterministic generator (mulberry32): the same requests on every run.
function random(seed) {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function requests(count) {
  const next = random(7);
  const pick = (items) => items[Math.floor(next() * items.length)];
  return Array.from({ length: count }, (_, i) => ({
    method: pick(['GET', 'POST', '_OTHER']),
    route: pick(['/inventory/:sku', '/error', '<unmatched>', '/a "quoted"\\route']),
    statusClass: pick(['2xx', '4xx', '5xx']),
    // Values on bucket bounds, between them, beyond the last one, and zero.
    seconds: pick([0, ...BUCKETS, 42]) * (next() < 0.5 ? 1 : 0.7),
    spanContext: {
      traceId: i.toString(16).padStart(32, '0'),
      spanId: '1'.padStart(16, '0'),
      traceFlags: next() < 0.3 ? 1 : 0,
    },
  }));
}

// prom-client's own metrics, fed the same requests the way request-telemetry.mjs used to.
function reference(all, contentType) {
  const registry = new client.Registry(contentType);
  // prom-client allows exemplars only in OpenMetrics; Prometheus text cannot show them anyway.
  const enableExemplars = contentType === client.Registry.OPENMETRICS_CONTENT_TYPE;
  const labelNames = ['method', 'route', 'status_class'];
  const counter = new client.Counter({
    name: 'http_server_requests_total',
    help: 'HTTP requests served, by route template (never the raw path).',
    labelNames,
    registers: [registry],
  });
  const histogram = new client.Histogram({
    name: 'http_server_request_duration_seconds',
    help: 'Time to serve an HTTP request; exemplars carry the trace id.',
    labelNames,
    buckets: BUCKETS,
    enableExemplars,
    registers: [registry],
  });
  for (const { method, route, statusClass, seconds, spanContext } of all) {
    const labels = { method, route, status_class: statusClass };
    counter.inc(labels);
    if (!enableExemplars) {
      histogram.observe(labels, seconds);
      continue;
    }
    // Exemplars on failed requests only (see metrics.mjs).
    const failed = statusClass === '5xx' && (spanContext.traceFlags & 1) === 1;
    histogram.observe({ labels, value: seconds, exemplarLabels: failed ? { trace_id: spanContext.traceId } : {} });
  }
  return registry;
}

// The HTTP server families of a rendering, with exemplar timestamps (wall clock) blanked.
function httpFamilies(text) {
  return text
    .split('\n')
    .filter((line) => /^(# (HELP|TYPE) )?http_server_request/.test(line))
    .map((line) => line.replace(/( # \{[^}]*\} \S+) \d+(\.\d+)?$/, '$1 <timestamp>'));
}

describe('HTTP server metrics', () => {
  const all = requests(2000);
  enableExemplars();
  for (const request of all) {
    recordHttpRequest(request.method, request.route, request.statusClass, request.seconds, request.spanContext);
  }

  it('render as prom-client renders them, in OpenMetrics with exemplars', async () => {
    const ours = httpFamilies((await renderMetrics('application/openmetrics-text; version=1.0.0')).body);
    const theirs = httpFamilies(await reference(all, client.Registry.OPENMETRICS_CONTENT_TYPE).metrics());
    assert.ok(theirs.some((line) => line.includes(' # {trace_id="')), 'the reference has exemplars');
    assert.ok(theirs.length > 500);
    assert.deepEqual(ours, theirs);
  });

  it('render as prom-client renders them, in Prometheus text', async () => {
    const ours = httpFamilies((await renderMetrics('text/plain')).body);
    const theirs = httpFamilies(await reference(all, client.Registry.PROMETHEUS_CONTENT_TYPE).metrics());
    assert.ok(theirs.some((line) => line.startsWith('http_server_requests_total{')));
    assert.deepEqual(ours, theirs);
  });
});
