// Telemetry backends that refuse connections or hang: requests and probes are not slowed beyond
// their own timeouts, queues stay bounded, and what is lost is counted in telemetry_dropped_total.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';

import { OtlpReceiver, SentryReceiver, refusedPort, waitFor } from './helpers/receivers.mjs';
import { samples, startService } from './helpers/service.mjs';

// Exports and Sentry deliveries wait this long before giving up. A request that took this long
// would have waited on a backend; the assertions use half of it, leaving room for a busy machine.
const BACKEND_TIMEOUT_MS = 20_000;
const QUEUE = 50;
const PROBE_TIMEOUT_MS = 1000;

async function burst(service, paths, concurrency = 8) {
  const results = [];
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const path = paths[next++];
      results.push({ path, ...(await service.request(path)) });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return results;
}

async function dropped(service) {
  const all = await service.metrics();
  return Object.fromEntries(
    ['traces', 'logs', 'errors'].map((signal) => [
      signal,
      // Every reason together.
      samples(all, 'telemetry_dropped_total', { signal }).reduce((sum, sample) => sum + sample.value, 0),
    ]),
  );
}

async function healthyTarget() {
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

function outageEnv({ traces, logs, dsn, target, backendTimeoutMs = BACKEND_TIMEOUT_MS }) {
  return {
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: traces,
    OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: logs,
    SENTRY_DSN: dsn,
    OTEL_EXPORTER_OTLP_TIMEOUT: String(backendTimeoutMs),
    SENTRY_TIMEOUT_MS: String(backendTimeoutMs),
    OTEL_BSP_MAX_QUEUE_SIZE: String(QUEUE),
    OTEL_BLRP_MAX_QUEUE_SIZE: String(QUEUE),
    MONITOR_TARGETS: `http://127.0.0.1:${target.address().port}/health`,
    MONITOR_INTERVAL_MS: '200',
    MONITOR_TIMEOUT_MS: String(PROBE_TIMEOUT_MS),
    LOG_LEVEL: 'info',
  };
}

async function assertProbesUnaffected(service) {
  const before = (await service.request('/targets')).json.targets[0];
  await waitFor(
    async () => {
      const now = (await service.request('/targets')).json.targets[0];
      return now.checked_at !== before.checked_at && now;
    },
    { message: 'a fresh probe result' },
  );
  const all = await service.metrics();
  const [count] = samples(all, 'probe_duration_seconds_count');
  const [sum] = samples(all, 'probe_duration_seconds_sum');
  const [success] = samples(all, 'probe_success');
  assert.equal(success.value, 1);
  // Probes of a healthy target never waited on a telemetry backend.
  assert.ok(sum.value / count.value < PROBE_TIMEOUT_MS / 1000, `mean probe ${sum.value / count.value}s`);
}

describe('backends hanging (accept, never answer)', () => {
  let otlp;
  let sentry;
  let target;
  let service;
  before(async () => {
    otlp = await new OtlpReceiver().start();
    sentry = await new SentryReceiver().start();
    otlp.mode = 'hang';
    sentry.mode = 'hang';
    target = await healthyTarget();
    service = await startService(
      outageEnv({ traces: otlp.tracesEndpoint, logs: otlp.logsEndpoint, dsn: sentry.dsn, target }),
    );
  });
  after(async () => {
    await service?.stop();
    await otlp?.close();
    await sentry?.close();
    target?.closeAllConnections();
    target?.close();
  });

  it('serves a burst without waiting on them, drops beyond the bounded queues and counts it', async () => {
    const rssBefore = samples(await service.metrics(), 'process_resident_memory_bytes')[0].value;
    const errors = 150;
    const reads = 750;
    const paths = [
      ...Array.from({ length: errors }, () => '/error'),
      ...Array.from({ length: reads }, (_, i) => `/inventory/SB-100${(i % 5) + 1}`),
    ];
    const results = await burst(service, paths);
    assert.equal(results.filter((r) => r.path === '/error' && r.status === 500).length, errors);
    assert.equal(results.filter((r) => r.path !== '/error' && r.status === 200).length, reads);
    const slowest = Math.max(...results.map((r) => r.ms));
    assert.ok(slowest < BACKEND_TIMEOUT_MS / 2, `slowest request ${slowest} ms`);

    // Nothing is ever delivered, so all but what a batch processor holds (its queue, and the batch
    // it is exporting: a queue's worth each here) is dropped: at least one span and one log line
    // per request, one Sentry event per /error (transport buffer: 64).
    const held = 2 * QUEUE;
    const lost = await waitFor(
      async () => {
        const counts = await dropped(service);
        return counts.traces >= errors + reads - held && counts.errors >= errors - 64 && counts;
      },
      { message: 'drops to be counted' },
    );
    assert.ok(lost.logs >= errors + reads - held, JSON.stringify(lost));
    // The senders bound their concurrency too.
    assert.ok(sentry.maxOpenRequests <= 64, `Sentry connections: ${sentry.maxOpenRequests}`);

    const rssAfter = samples(await service.metrics(), 'process_resident_memory_bytes')[0].value;
    const grownMb = (rssAfter - rssBefore) / 2 ** 20;
    assert.ok(grownMb < 100, `RSS grew ${grownMb.toFixed(1)} MB over the burst`);
  });

  it('keeps probing on schedule', async () => {
    await assertProbesUnaffected(service);
  });

  it('still answers health, readiness and metrics', async () => {
    for (const path of ['/health', '/ready', '/metrics', '/targets']) {
      const response = await service.request(path);
      assert.equal(response.status, 200, path);
      assert.ok(response.ms < BACKEND_TIMEOUT_MS / 2);
    }
  });

  it('shuts down promptly even though the backends never answer', async () => {
    const started = performance.now();
    const { code } = await service.stop();
    assert.equal(code, 0);
    assert.ok(performance.now() - started < BACKEND_TIMEOUT_MS, 'shutdown waited on a backend');
  });
});

describe('backends refusing connections', () => {
  let service;
  let target;
  before(async () => {
    const port = await refusedPort();
    target = await healthyTarget();
    service = await startService(
      outageEnv({
        traces: `http://127.0.0.1:${port}/v1/traces`,
        logs: `http://127.0.0.1:${port}/v1/logs`,
        dsn: `http://public@127.0.0.1:${port}/1`,
        target,
        // The OTLP exporter retries refused connections until its timeout, then counts the loss.
        backendTimeoutMs: 2000,
      }),
    );
  });
  after(async () => {
    await service?.stop();
    target?.closeAllConnections();
    target?.close();
  });

  it('serves requests normally and counts every signal it could not deliver', async () => {
    const results = await burst(service, [
      ...Array.from({ length: 40 }, () => '/error'),
      ...Array.from({ length: 40 }, () => '/inventory/SB-1001'),
    ]);
    assert.ok(results.every((r) => r.status === (r.path === '/error' ? 500 : 200)));
    assert.ok(Math.max(...results.map((r) => r.ms)) < BACKEND_TIMEOUT_MS / 2);
    const lost = await waitFor(
      async () => {
        const counts = await dropped(service);
        return counts.traces >= 80 && counts.logs >= 80 && counts.errors >= 40 && counts;
      },
      { message: 'failed deliveries to be counted' },
    );
  });

  it('keeps probing on schedule', async () => {
    await assertProbesUnaffected(service);
  });
});

describe('an outage in the logs', () => {
  it('is one line as delivery fails and one as it recovers, with what was dropped, never a line per item', async () => {
    const [otlpPort, sentryPort] = [await refusedPort(), await refusedPort()];
    const service = await startService({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://127.0.0.1:${otlpPort}/v1/traces`,
      OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: `http://127.0.0.1:${otlpPort}/v1/logs`,
      SENTRY_DSN: `http://public@127.0.0.1:${sentryPort}/1`,
      OTEL_EXPORTER_OTLP_TIMEOUT: '1000',
      LOG_LEVEL: 'info',
    });
    const otlp = new OtlpReceiver();
    const sentry = new SentryReceiver();
    const lines = (prefix) => service.logs.filter((line) => line.message?.startsWith(prefix));
    try {
      for (let i = 0; i < 6; i++) {
        await service.request('/error?kind=handled');
        await new Promise((resolve) => setTimeout(resolve, 150)); // batches of their own
      }
      await waitFor(
        async () => {
          const counts = await dropped(service);
          return counts.traces >= 6 && counts.logs >= 6 && counts.errors >= 6;
        },
        { message: 'every lost span, log record and event counted' },
      );
      const backends = { sentry: 'errors', traces: 'traces', logs: 'logs' };
      // One warning per backend, nothing per batch or per event.
      const warnings = service.logs.filter((line) => line.level === 'warn').map((line) => line.message);
      assert.equal(warnings.length, 3, JSON.stringify(warnings));
      for (const backend of Object.keys(backends)) {
        assert.equal(lines(`${backend}: delivery failing since `).length, 1, backend);
      }

      // The backends come back where they were.
      await otlp.start(otlpPort);
      await sentry.start(sentryPort);
      await service.request('/error?kind=handled');
      await waitFor(() => Object.keys(backends).every((backend) => lines(`${backend}: delivery recovered`).length), {
        message: 'every backend recovered',
      });
      const lost = await dropped(service);
      for (const [backend, signal] of Object.entries(backends)) {
        assert.equal(lines(`${backend}: delivery failing since `).length, 1, backend);
        assert.deepEqual(
          lines(`${backend}: delivery recovered`).map((line) => line.message),
          [`${backend}: delivery recovered after ${lost[signal]} dropped`],
        );
      }
    } finally {
      await service.stop();
      await otlp.close();
      await sentry.close();
    }
  });

  it('counts the events a failing Sentry answers with 500 (the SDK does not), and logs the outage once', async () => {
    const sentry = await new SentryReceiver().start();
    sentry.mode = 'fail';
    const service = await startService({ SENTRY_DSN: sentry.dsn, LOG_LEVEL: 'info' });
    const lines = (prefix) => service.logs.filter((line) => line.message?.startsWith(prefix));
    try {
      for (let i = 0; i < 4; i++) {
        await service.request('/error?kind=handled');
      }
      await waitFor(async () => (await dropped(service)).errors >= 4, { message: '4 lost events counted' });
      // The line is written by the transport as it sees the failure, asynchronously from the count.
      await waitFor(() => lines('sentry: delivery failing since ').length, { message: 'the outage line' });
      assert.deepEqual(
        lines('sentry: delivery failing since ').map((line) => line.reason),
        ['HTTP 500'],
      );
      sentry.mode = 'ok';
      await service.request('/error?kind=handled');
      await waitFor(() => lines('sentry: delivery recovered').length, { message: 'sentry recovered' });
      assert.equal(lines('sentry: delivery recovered')[0].message, 'sentry: delivery recovered after 4 dropped');
      assert.equal(sentry.events().length, 1);
    } finally {
      await service.stop();
      await sentry.close();
    }
  });
});
