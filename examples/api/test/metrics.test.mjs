// Which requests become exemplars of http_server_request_duration_seconds: only a failed request
// whose trace is sampled and exported can lead to a stored trace.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { enableExemplars, recordHttpRequest, renderMetrics } from '../src/metrics.mjs';

const OPENMETRICS = 'application/openmetrics-text; version=1.0.0';

function spanContext(traceId, sampled) {
  return { traceId, spanId: '1'.padStart(16, '0'), traceFlags: sampled ? 1 : 0 };
}

async function exemplarTraceIds() {
  const { body } = await renderMetrics(OPENMETRICS);
  return [...body.matchAll(/^http_server_request_duration_seconds_bucket\{.*\} \d+ # \{trace_id="(\w+)"\}/gm)].map(
    (match) => match[1],
  );
}

describe('HTTP server metrics', () => {
  it('serve no exemplar before spans are exported', async () => {
    recordHttpRequest('GET', '/error', '5xx', 0.02, spanContext('a'.repeat(32), true));
    assert.deepEqual(await exemplarTraceIds(), []);
  });

  it('make a failed request with a sampled trace the exemplar of its bucket, and nothing else', async () => {
    enableExemplars();
    recordHttpRequest('GET', '/error', '5xx', 0.02, spanContext('b'.repeat(32), true));
    recordHttpRequest('GET', '/error', '5xx', 0.3, spanContext('c'.repeat(32), false));
    recordHttpRequest('GET', '/inventory/:sku', '2xx', 0.002, spanContext('d'.repeat(32), true));
    recordHttpRequest('GET', '/error', '5xx', 0.7, undefined);
    assert.deepEqual(await exemplarTraceIds(), ['b'.repeat(32)]);

    const { body } = await renderMetrics('text/plain');
    assert.match(body, /^http_server_requests_total\{method="GET",route="\/error",status_class="5xx"\} 4$/m);
  });
});
