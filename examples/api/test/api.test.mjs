// The HTTP API of the real service (started as a child process): routes, bad input, dual-stack
// listening, metrics formats and graceful shutdown.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { OtlpReceiver, SentryReceiver, waitFor } from './helpers/receivers.mjs';
import { parseMetrics, samples, startService } from './helpers/service.mjs';

describe('API', () => {
  let service;
  let otlp;
  before(async () => {
    otlp = await new OtlpReceiver().start();
    service = await startService({
      SENTRY_RELEASE: 'api@1.2.3',
      GIT_COMMIT: 'abc1234',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlp.tracesEndpoint,
    });
  });
  after(async () => {
    await service?.stop();
    await otlp?.close();
  });

  it('answers on IPv4 and IPv6 loopback (listens dual-stack on ::)', async () => {
    const v4 = await service.request('/health', { host: '127.0.0.1' });
    const v6 = await service.request('/health', { host: '::1' });
    assert.deepEqual([v4.status, v4.json], [200, { status: 'ok' }]);
    assert.deepEqual([v6.status, v6.json], [200, { status: 'ok' }]);
  });

  it('is ready, and describes itself', async () => {
    assert.deepEqual((await service.request('/ready')).json, { status: 'ready' });
    const info = (await service.request('/')).json;
    assert.equal(info.service, 'api');
    assert.equal(info.version, 'api@1.2.3');
  });

  it('serves the inventory the FastAPI /chain route calls', async () => {
    const found = await service.request('/inventory/SB-1003');
    assert.equal(found.status, 200);
    assert.deepEqual(found.json, { sku: 'SB-1003', name: 'Point motor', in_stock: 0 });
    const missing = await service.request('/inventory/SB-9999');
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.json, { error: 'not_found', sku: 'SB-9999' });
  });

  it('answers bad input with 4xx JSON, never a crash', async () => {
    const cases = [
      ['/inventory/has%20space', 400, 'invalid_sku'],
      [`/inventory/${'A'.repeat(33)}`, 400, 'invalid_sku'],
      ['/inventory/SB_1001', 400, 'invalid_sku'],
      ['/inventory/%E0%A4%A', 400, 'bad_request'],
      ['/error?kind=explode', 400, 'invalid_kind'],
      ['/error?kind=a&kind=b', 400, 'invalid_kind'],
      ['/no/such/route', 404, 'not_found'],
    ];
    for (const [path, status, error] of cases) {
      const response = await service.request(path);
      assert.equal(response.status, status, path);
      assert.match(response.headers['content-type'], /^application\/json/, path);
      assert.equal(response.json.error, error, path);
    }
    const post = await service.request('/inventory/SB-1001', { method: 'POST' });
    assert.equal(post.status, 404);
    assert.equal(post.json.error, 'not_found');
    // Still alive and well.
    assert.equal((await service.request('/health')).status, 200);
  });

  it('answers /error with a 500 JSON body carrying the trace id', async () => {
    const unhandled = await service.request('/error');
    assert.equal(unhandled.status, 500);
    assert.equal(unhandled.json.error, 'internal_error');
    assert.match(unhandled.json.trace_id, /^[0-9a-f]{32}$/);
    const handled = await service.request('/error?kind=handled');
    assert.equal(handled.status, 500);
    assert.equal(handled.json.error, 'deliberate_error');
  });

  it('labels request metrics by route template, never the raw path', async () => {
    await service.request('/inventory/SB-1001');
    await service.request('/inventory/SB-1002');
    await service.request('/inventory/nope-1');
    await service.request('/totally/unknown/42');
    const all = await service.metrics();
    const routes = new Set(samples(all, 'http_server_requests_total').map((s) => s.labels.route));
    assert.ok(routes.has('/inventory/:sku'));
    assert.ok(routes.has('<unmatched>'));
    for (const route of routes) {
      assert.doesNotMatch(route, /SB-|nope|unknown/, `raw path leaked into route label: ${route}`);
    }
    const ok = samples(all, 'http_server_requests_total', {
      method: 'GET',
      route: '/inventory/:sku',
      status_class: '2xx',
    });
    assert.ok(ok[0].value >= 2);
    assert.equal(
      samples(all, 'http_server_requests_total', { route: '/inventory/:sku', status_class: '4xx' })[0].value >= 1,
      true,
    );
  });

  it('exports build info, dropped-telemetry counters and default process metrics', async () => {
    const all = await service.metrics({ openMetrics: false });
    assert.equal(samples(all, 'app_build_info', { version: 'api@1.2.3', commit: 'abc1234', service: 'api' })[0].value, 1);
    for (const signal of ['traces', 'logs', 'errors']) {
      assert.equal(samples(all, 'telemetry_dropped_total', { signal, reason: 'queue_full' }).length, 1, signal);
    }
    assert.ok(samples(all, 'process_resident_memory_bytes')[0].value > 0);
    assert.ok(samples(all, 'process_cpu_seconds_total').length === 1);
  });

  it('negotiates the exposition format: OpenMetrics with exemplars, else Prometheus text', async () => {
    await service.request('/inventory/SB-1001');
    await service.request('/error?kind=handled');
    const openMetrics = await service.request('/metrics', {
      headers: { accept: 'application/openmetrics-text;version=1.0.0,text/plain;q=0.5' },
    });
    assert.match(openMetrics.headers['content-type'], /^application\/openmetrics-text/);
    assert.match(openMetrics.text, /# EOF\n$/);
    assert.match(openMetrics.text, /^http_server_requests_total\{/m);
    // Exemplars mark failed requests only: the collector's tail sampling keeps every trace with
    // an error, so each exemplar opens a trace that exists.
    const withExemplar = parseMetrics(openMetrics.text).filter((s) => s.exemplar?.labels.trace_id);
    assert.ok(withExemplar.length > 0);
    assert.ok(withExemplar.every((s) => s.labels.status_class === '5xx'), JSON.stringify(withExemplar));

    // After an OpenMetrics scrape, plain text must still carry the _total counter names.
    const text = await service.request('/metrics', { headers: { accept: 'text/plain' } });
    assert.match(text.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    assert.doesNotMatch(text.text, /# EOF| # \{/);
    assert.match(text.text, /^http_server_requests_total\{/m);
    assert.match(text.text, /^telemetry_dropped_total\{signal="traces",reason="queue_full"\} 0$/m);
  });

  it('logs one JSON line per request with the route template', async () => {
    await service.request('/inventory/SB-1004?email=ada@example.com');
    const line = await waitFor(
      () => service.logs.find((l) => l.message === 'request' && l.path === '/inventory/SB-1004'),
      { message: 'the request log line' },
    );
    assert.equal(line.http_route, '/inventory/:sku');
    assert.equal(line.http_status, 200);
    assert.equal(line.service, 'api');
    assert.ok(!JSON.stringify(service.logs).includes('ada@example.com'));
  });
});

describe('without a traces endpoint', () => {
  it('serves no exemplars: they would point at traces nobody stored', async () => {
    const service = await startService();
    try {
      await service.request('/inventory/SB-1001');
      const all = await service.metrics();
      assert.ok(samples(all, 'http_server_request_duration_seconds_count', { route: '/inventory/:sku' })[0].value >= 1);
      assert.deepEqual(all.filter((s) => s.exemplar), []);
    } finally {
      await service.stop();
    }
  });
});

describe('shutdown', () => {
  it('stops cleanly on SIGTERM, exit code 0', async () => {
    const service = await startService();
    const { code } = await service.stop('SIGTERM');
    assert.equal(code, 0);
    assert.ok(service.logs.some((l) => l.message === 'stopped'));
  });

  for (const signal of ['SIGTERM', 'SIGINT']) {
    it(`on ${signal}: flushes telemetry within a bound, says so in its last line, exits 0`, async () => {
      const otlp = await new OtlpReceiver().start();
      const sentry = await new SentryReceiver().start();
      try {
        const service = await startService({
          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlp.tracesEndpoint,
          OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: otlp.logsEndpoint,
          SENTRY_DSN: sentry.dsn,
          // Batches are due only after a minute: what reaches the receivers, the stop flushed.
          OTEL_BSP_SCHEDULE_DELAY: '60000',
          OTEL_BLRP_SCHEDULE_DELAY: '60000',
        });
        const { trace_id: traceId } = (await service.request('/error?kind=handled')).json;
        const started = performance.now();
        const { code } = await service.stop(signal);
        assert.equal(code, 0);
        // Draining (at most 3 s) plus the flush (at most 3 s), with room for a busy machine.
        assert.ok(performance.now() - started < 8000, 'the stop took too long');

        const last = await waitFor(() => service.logs.at(-1)?.message === 'stopped' && service.logs.at(-1), {
          message: 'the stopped line, last',
        });
        assert.deepEqual(last.flushed, ['traces', 'logs', 'sentry']);
        assert.deepEqual(last.not_flushed, []);
        assert.deepEqual(last.dropped, { traces: 0, logs: 0, errors: 0 });
        assert.ok(otlp.spans().some((span) => span.traceId === traceId), 'the span was not flushed');
        assert.ok(otlp.logRecords().some((record) => record.traceId === traceId), 'the log was not flushed');
        assert.equal(sentry.events().length, 1);
      } finally {
        await otlp.close();
        await sentry.close();
      }
    });
  }
});
