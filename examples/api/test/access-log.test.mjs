// ACCESS_LOG: which requests get an access line (stdout and OTLP). Sampling is made
// deterministic with an incoming traceparent: the parent-based sampler keeps its decision.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { OtlpReceiver, waitFor } from './helpers/receivers.mjs';
import { samples, startService } from './helpers/service.mjs';

const UNSAMPLED = '11111111111111111111111111111111';
const SAMPLED = '22222222222222222222222222222222';
const UNSAMPLED_ERROR = '33333333333333333333333333333333';
const traceparent = (traceId, flags) => ({ traceparent: `00-${traceId}-aaaaaaaaaaaaaaaa-${flags}` });

async function startWithReceiver(env) {
  const otlp = await new OtlpReceiver().start();
  const service = await startService({
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlp.tracesEndpoint,
    OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: otlp.logsEndpoint,
    ...env,
  });
  return { otlp, service };
}

const accessLines = (service, traceId) => service.logs.filter((l) => l.message === 'request' && l.trace_id === traceId);
const accessRecords = (otlp, traceId) => otlp.logRecords().filter((r) => r.body === 'request' && r.traceId === traceId);

describe('ACCESS_LOG=sampled (the default)', () => {
  let otlp;
  let service;
  before(async () => {
    ({ otlp, service } = await startWithReceiver({}));
  });
  after(async () => {
    await service?.stop();
    await otlp?.close();
  });

  it('writes the access line of a sampled trace, and of a 5xx even when unsampled, to stdout and OTLP', async () => {
    await service.request('/inventory/SB-1001', { headers: traceparent(UNSAMPLED, '00') });
    const error = await service.request('/error', { headers: traceparent(UNSAMPLED_ERROR, '00') });
    assert.equal(error.status, 500);
    await service.request('/inventory/SB-1002', { headers: traceparent(SAMPLED, '01') });

    // Lines and records arrive in request order: once the last one is there, the others would be.
    await waitFor(() => accessLines(service, SAMPLED).length === 1, { message: 'the sampled request line' });
    await waitFor(() => accessRecords(otlp, SAMPLED).length === 1, { message: 'the sampled request record' });
    const errorLine = accessLines(service, UNSAMPLED_ERROR);
    assert.equal(errorLine.length, 1, 'the unsampled 5xx is logged');
    assert.equal(errorLine[0].http_status, 500);
    assert.equal(accessRecords(otlp, UNSAMPLED_ERROR).length, 1);

    assert.deepEqual(accessLines(service, UNSAMPLED), [], 'no line for the unsampled 200');
    assert.deepEqual(accessRecords(otlp, UNSAMPLED), []);
    // Other log lines are not subject to sampling.
    assert.ok(service.logs.some((l) => l.message === 'request failed' && l.trace_id === UNSAMPLED_ERROR));
  });

  it('logs requests of the default always-on sampler, and counts every request in the metrics', async () => {
    const countBefore = samples(await service.metrics(), 'http_server_requests_total', {
      route: '/inventory/:sku',
      status_class: '2xx',
    })[0].value;
    await service.request('/inventory/SB-1003', { headers: traceparent('44444444444444444444444444444444', '00') });
    await service.request('/inventory/SB-1004');
    await waitFor(() => service.logs.some((l) => l.message === 'request' && l.path === '/inventory/SB-1004' && l.trace_id), {
      message: 'the access line of a request without a traceparent',
    });
    assert.ok(!service.logs.some((l) => l.message === 'request' && l.path === '/inventory/SB-1003'));
    const countAfter = samples(await service.metrics(), 'http_server_requests_total', {
      route: '/inventory/:sku',
      status_class: '2xx',
    })[0].value;
    assert.equal(countAfter - countBefore, 2, 'the unsampled request is counted too');
  });
});

describe('ACCESS_LOG=all', () => {
  it('writes an access line for every request, sampled or not', async () => {
    const { otlp, service } = await startWithReceiver({ ACCESS_LOG: 'all' });
    try {
      await service.request('/inventory/SB-1001', { headers: traceparent(UNSAMPLED, '00') });
      await waitFor(() => accessLines(service, UNSAMPLED).length === 1, { message: 'the unsampled request line' });
      await waitFor(() => accessRecords(otlp, UNSAMPLED).length === 1, { message: 'the unsampled request record' });
    } finally {
      await service.stop();
      await otlp.close();
    }
  });
});
