// OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG decide which traces are exported, as the
// OpenTelemetry spec says (the README's "10% traced" production setting relies on them).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { OtlpReceiver, waitFor } from './helpers/receivers.mjs';
import { startService } from './helpers/service.mjs';

const SERVER = 2; // OTLP SpanKind SERVER
const PATH = '/inventory/SB-1001';

describe('head sampling from the environment', () => {
  let otlp;
  before(async () => {
    otlp = await new OtlpReceiver().start();
  });
  after(async () => {
    await otlp?.close();
  });

  /** Starts the service with `env`, sends `requests` in order and stops it (flushing its spans). */
  async function run(env, requests) {
    const service = await startService({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlp.tracesEndpoint,
      ACCESS_LOG: 'all',
      ...env,
    });
    try {
      const traceIds = [];
      for (const headers of requests) {
        await service.request(PATH, { headers });
        // The access line names the request's trace, sampled or not.
        const line = await waitFor(() => service.logs.filter((l) => l.message === 'request')[traceIds.length], {
          message: `the access line of request ${traceIds.length + 1}`,
        });
        traceIds.push(line.trace_id);
      }
      return traceIds;
    } finally {
      await service.stop();
    }
  }

  const exported = (traceId) => otlp.spans().some((s) => s.kind === SERVER && s.traceId === traceId);
  const parent = (traceId) => ({ traceparent: `00-${traceId}-00f067aa0ba902b7-01` });

  it('parentbased_traceidratio at 0: new traces are not exported, a sampled caller is followed', async () => {
    const called = '5a'.repeat(16);
    const [alone, continued] = await run(
      { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' },
      [{}, parent(called)],
    );
    assert.equal(continued, called);
    // stop() flushed the queue: whatever was sampled has been received.
    assert.ok(exported(called), 'the span of the request whose caller sampled it');
    assert.ok(!exported(alone), `the unsampled request's trace ${alone} was exported`);
  });

  it('always_off: nothing is exported, not even for a sampled caller', async () => {
    const called = '5b'.repeat(16);
    const [alone, continued] = await run({ OTEL_TRACES_SAMPLER: 'always_off' }, [{}, parent(called)]);
    assert.equal(continued, called);
    assert.ok(!exported(alone) && !exported(called), 'a span was exported under always_off');
  });

  it('traceidratio at 1 (the default ratio): every new trace is exported', async () => {
    const [alone] = await run({ OTEL_TRACES_SAMPLER: 'traceidratio' }, [{}]);
    assert.ok(exported(alone), `the trace ${alone} was not exported`);
  });
});
