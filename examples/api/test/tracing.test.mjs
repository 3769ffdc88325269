// One trace id across Sentry, exported spans, OTLP logs and metric exemplars, with real receivers
// decoding what the service sends (OTLP/HTTP JSON, chunked Sentry envelopes).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';

import { OtlpReceiver, SentryReceiver, waitFor } from './helpers/receivers.mjs';
import { samples, startService } from './helpers/service.mjs';

const SERVER = 2; // OTLP SpanKind SERVER
// The log records' instrumentation scope: the pino instrumentation, at its installed version.
const PINO_INSTRUMENTATION = JSON.parse(
  readFileSync(new URL('../node_modules/@opentelemetry/instrumentation-pino/package.json', import.meta.url), 'utf8'),
);

describe('trace-id join', () => {
  let otlp;
  let sentry;
  let service;
  before(async () => {
    otlp = await new OtlpReceiver().start();
    sentry = await new SentryReceiver().start();
    service = await startService({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlp.tracesEndpoint,
      OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: otlp.logsEndpoint,
      SENTRY_DSN: sentry.dsn,
      SENTRY_ENVIRONMENT: 'test',
    });
  });
  after(async () => {
    await service?.stop();
    await otlp?.close();
    await sentry?.close();
  });

  it('/error: the Sentry event, the server span, the OTLP logs and the exemplar share one trace id', async () => {
    const response = await service.request('/error');
    assert.equal(response.status, 500);
    const traceId = response.json.trace_id;

    const event = await waitFor(
      () => sentry.events().find((e) => e.exception?.values?.[0]?.type === 'DeliberateError' && e.contexts?.trace?.trace_id === traceId),
      { message: 'the DeliberateError event with the response trace id' },
    );
    assert.equal(event.environment, 'test');
    assert.equal(event.exception.values[0].mechanism?.handled, false);
    // @sentry/node streams envelopes with chunked transfer encoding.
    assert.ok(sentry.requests.some((r) => r.chunked));

    const serverSpan = await waitFor(
      () => otlp.spans().find((s) => s.kind === SERVER && s.name === 'GET /error'),
      { message: 'the exported GET /error server span' },
    );
    assert.equal(serverSpan.traceId, traceId);
    assert.equal(serverSpan.serviceName, 'api');
    assert.equal(serverSpan.attributes['http.route'], '/error');
    assert.equal(serverSpan.attributes['http.response.status_code'], 500);
    // The Sentry event points at a span of that same trace.
    const spanIds = new Set(otlp.spans().filter((s) => s.traceId === traceId).map((s) => s.spanId));
    assert.ok(spanIds.has(event.contexts.trace.span_id), 'event span id is an exported span');

    const logs = await waitFor(
      () => {
        const found = otlp.logRecords().filter((r) => r.traceId === traceId);
        return found.some((r) => r.body === 'request failed') && found.some((r) => r.body === 'request') && found;
      },
      { message: 'OTLP log records of the /error request' },
    );
    const failure = logs.find((r) => r.body === 'request failed');
    assert.equal(failure.severityText, 'error');
    assert.equal(failure.serviceName, 'api');
    assert.ok(spanIds.has(failure.spanId));
    // stdout carries the same ids.
    assert.ok(service.logs.some((l) => l.message === 'request failed' && l.trace_id === traceId && l.span_id));

    const exemplars = samples(await service.metrics(), 'http_server_request_duration_seconds_bucket', {
      route: '/error',
      status_class: '5xx',
    }).filter((s) => s.exemplar);
    assert.ok(
      exemplars.some((s) => s.exemplar.labels.trace_id === traceId),
      `exemplar with ${traceId} in ${JSON.stringify(exemplars.map((s) => s.exemplar))}`,
    );
  });

  it('OTLP log records carry what the stdout lines carry, as the pino instrumentation sent them', async () => {
    // What the instrumentation's log sending made of a JSON line: body = message, severity from the
    // level, the line's time, ids of the active span, the other fields as attributes, `err` as
    // exception.* attributes.
    const SEVERITY = { debug: 5, info: 9, warn: 13, error: 17 };
    const expectedRecord = (line) => {
      const { level, time, message, trace_id, span_id, trace_flags, err, ...fields } = line;
      const exception = err
        ? { 'exception.type': err.type, 'exception.message': err.message, 'exception.stacktrace': err.stack }
        : {};
      return {
        traceId: trace_id,
        spanId: span_id,
        flags: Number.parseInt(trace_flags, 16),
        timeUnixNano: String(BigInt(Date.parse(time)) * 1_000_000n),
        observedTimeUnixNano: String(BigInt(Date.parse(time)) * 1_000_000n),
        severityNumber: SEVERITY[level],
        severityText: level,
        body: message,
        attributes: { ...fields, ...exception },
        serviceName: 'api',
        scope: { name: PINO_INSTRUMENTATION.name, version: PINO_INSTRUMENTATION.version },
      };
    };
    const paths = ['/inventory/SB-9999?email=ada@example.com', '/inventory/x@example.com', '/error?marker=otlp-logs'];
    const traces = paths.map((_, i) => `4a${String(i).repeat(30)}`);
    for (const [i, path] of paths.entries()) {
      await service.request(path, { headers: { traceparent: `00-${traces[i]}-00f067aa0ba902b7-01` } });
    }
    const lines = await waitFor(() => {
      const found = service.logs.filter((l) => l.trace_id && traces.includes(l.trace_id));
      return found.length >= 4 && found; // three access lines and `request failed`
    }, { message: 'stdout lines of the requests' });
    for (const line of lines) {
      const record = await waitFor(
        () => otlp.logRecords().find((r) => r.traceId === line.trace_id && r.body === line.message),
        { message: `OTLP record of ${line.message} in ${line.trace_id}` },
      );
      assert.deepEqual(record, expectedRecord(line));
      assert.deepEqual(Object.keys(record.attributes), Object.keys(expectedRecord(line).attributes));
    }
  });

  it('/error?kind=handled: the captured event carries the request trace id too', async () => {
    const response = await service.request('/error?kind=handled');
    assert.equal(response.status, 500);
    const event = await waitFor(
      () => sentry.events().find((e) => e.event_id === response.json.sentry_event_id),
      { message: 'the handled event' },
    );
    assert.equal(event.contexts.trace.trace_id, response.json.trace_id);
  });

  it('continues an incoming W3C traceparent', async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const parent = 'b7ad6b7169203331';
    const response = await service.request('/error', { headers: { traceparent: `00-${traceId}-${parent}-01` } });
    assert.equal(response.json.trace_id, traceId);
    const span = await waitFor(() => otlp.spans().find((s) => s.kind === SERVER && s.traceId === traceId), {
      message: 'server span continuing the traceparent',
    });
    assert.equal(span.parentSpanId, parent);
    const event = await waitFor(() => sentry.events().find((e) => e.contexts?.trace?.trace_id === traceId), {
      message: 'Sentry event in the incoming trace',
    });
    assert.equal(event.exception.values[0].type, 'DeliberateError');
  });

  it('continues an incoming sentry-trace header', async () => {
    const traceId = '5e9c8c8a8b7d4e0f9a1b2c3d4e5f6a7b';
    const parent = '1a2b3c4d5e6f7a8b';
    const response = await service.request('/inventory/SB-1002', {
      headers: { 'sentry-trace': `${traceId}-${parent}-1`, baggage: `sentry-trace_id=${traceId},sentry-sampled=true` },
    });
    assert.equal(response.status, 200);
    const span = await waitFor(() => otlp.spans().find((s) => s.kind === SERVER && s.traceId === traceId), {
      message: 'server span continuing the sentry-trace',
    });
    assert.equal(span.parentSpanId, parent);
    assert.equal(span.name, 'GET /inventory/:sku');
  });

  it('prefers traceparent when both headers arrive (as the FastAPI service does)', async () => {
    const w3c = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
    const response = await service.request('/inventory/SB-1005', {
      headers: {
        traceparent: `00-${w3c}-bbbbbbbbbbbbbbbb-01`,
        'sentry-trace': 'cccccccccccccccccccccccccccccccc-dddddddddddddddd-1',
      },
    });
    assert.equal(response.status, 200);
    const span = await waitFor(
      () => otlp.spans().find((s) => s.kind === SERVER && s.attributes['url.path'] === '/inventory/SB-1005'),
      { message: 'server span' },
    );
    assert.equal(span.traceId, w3c);
    assert.equal(span.parentSpanId, 'bbbbbbbbbbbbbbbb');
  });

  it('ignores malformed trace headers: a new trace, no error', async () => {
    const response = await service.request('/inventory/SB-1004', {
      headers: { traceparent: '00-zzzz-not-a-trace-01', 'sentry-trace': 'nonsense', baggage: '%%%' },
    });
    assert.equal(response.status, 200);
    const span = await waitFor(
      () => otlp.spans().find((s) => s.kind === SERVER && s.attributes['url.path'] === '/inventory/SB-1004'),
      { message: 'server span' },
    );
    assert.equal(span.parentSpanId, '');
    assert.match(span.traceId, /^[0-9a-f]{32}$/);
  });

  it('starts a new trace when no header arrives, and never traces Sentry envelope POSTs', async () => {
    const { json } = await service.request('/error');
    await waitFor(() => sentry.events().some((e) => e.contexts?.trace?.trace_id === json.trace_id), {
      message: 'the event',
    });
    await service.request('/inventory/SB-1001');
    await waitFor(() => otlp.spans().some((s) => s.kind === SERVER && s.name === 'GET /inventory/:sku' && !s.parentSpanId), {
      message: 'a root server span',
    });
    const sentryPort = String(sentry.port);
    const leaked = otlp
      .spans()
      .filter((s) => String(s.attributes['server.port']) === sentryPort || String(s.attributes['url.full'] ?? '').includes('/envelope/'));
    assert.deepEqual(leaked, []);
    // Nor OTLP exports themselves.
    const otlpPort = String(otlp.port);
    assert.deepEqual(otlp.spans().filter((s) => String(s.attributes['server.port']) === otlpPort), []);
  });

  it('exports one span per request, the server span named by route (no per-layer spans)', async () => {
    const traceId = 'abcdefabcdefabcdefabcdefabcdef01';
    await service.request('/inventory/SB-1003', { headers: { traceparent: `00-${traceId}-bbbbbbbbbbbbbbbb-01` } });
    const span = await waitFor(() => otlp.spans().find((s) => s.traceId === traceId), { message: 'the server span' });
    assert.equal(span.kind, SERVER);
    assert.equal(span.name, 'GET /inventory/:sku');
    assert.equal(span.attributes['http.route'], '/inventory/:sku');
    // Spans of one request end together and are exported in one batch: give a straggler time.
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(otlp.spans().filter((s) => s.traceId === traceId).map((s) => s.name), ['GET /inventory/:sku']);
  });

  it('a recorded server span has the stable HTTP attributes, and a 5xx its exception as a span event', async () => {
    const traceId = 'c0ffee00c0ffee00c0ffee00c0ffee00';
    await service.request('/error?marker=attrs', {
      headers: { traceparent: `00-${traceId}-bbbbbbbbbbbbbbbb-01`, 'user-agent': 'signalbox-test/1' },
    });
    const span = await waitFor(() => otlp.spans().find((s) => s.traceId === traceId && s.kind === SERVER), {
      message: 'the /error server span',
    });
    assert.equal(span.name, 'GET /error');
    assert.deepEqual(
      {
        method: span.attributes['http.request.method'],
        scheme: span.attributes['url.scheme'],
        path: span.attributes['url.path'],
        query: span.attributes['url.query'],
        address: span.attributes['server.address'],
        port: span.attributes['server.port'],
        protocol: span.attributes['network.protocol.version'],
        userAgent: span.attributes['user_agent.original'],
        route: span.attributes['http.route'],
        status: span.attributes['http.response.status_code'],
        errorType: span.attributes['error.type'],
      },
      {
        method: 'GET',
        scheme: 'http',
        path: '/error',
        query: 'marker=attrs',
        address: '127.0.0.1',
        port: service.port,
        protocol: '1.1',
        userAgent: 'signalbox-test/1',
        route: '/error',
        status: 500,
        errorType: 'DeliberateError',
      },
    );
    assert.equal(span.status.code, 2); // ERROR
    const exception = span.events.find((e) => e.name === 'exception');
    assert.equal(exception?.attributes['exception.type'], 'DeliberateError');
    assert.match(exception.attributes['exception.stacktrace'], /^DeliberateError: deliberate error[^]*\n {4}at /);
  });

  it('no span for /health, /ready and /metrics; an unmatched path gets a span without a route', async () => {
    const quiet = 'dddddddddddddddddddddddddddddd01';
    const unmatched = 'dddddddddddddddddddddddddddddd02';
    for (const path of ['/health', '/ready', '/metrics']) {
      await service.request(path, { headers: { traceparent: `00-${quiet}-bbbbbbbbbbbbbbbb-01` } });
    }
    const response = await service.request('/no/such/route', {
      headers: { traceparent: `00-${unmatched}-bbbbbbbbbbbbbbbb-01` },
    });
    assert.equal(response.status, 404);
    const span = await waitFor(() => otlp.spans().find((s) => s.traceId === unmatched), { message: 'the 404 span' });
    assert.equal(span.name, 'GET');
    assert.equal(span.attributes['http.route'], undefined);
    assert.equal(span.attributes['http.response.status_code'], 404);
    assert.equal(span.status.code ?? 0, 0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(otlp.spans().filter((s) => s.traceId === quiet), []);
  });

  it('Sentry events carry the source lines of the application frame that threw, and the runtime contexts', async () => {
    const { json } = await service.request('/error?marker=frames');
    const event = await waitFor(() => sentry.events().find((e) => e.contexts?.trace?.trace_id === json.trace_id), {
      message: 'the event',
    });
    const frames = event.exception.values[0].stacktrace.frames;
    const own = frames.find((f) => f.in_app && /src\/app\.mjs$/.test(f.filename ?? ''));
    assert.match(own?.context_line ?? '', /throw new DeliberateError/);
    assert.match(event.contexts.app.app_start_time, /^\d{4}-\d\d-\d\dT/);
    assert.ok(event.contexts.os?.name, 'os context');
  });

  it('each Sentry event describes its own request (URL, route), never another one', async () => {
    const [first, second] = await Promise.all([
      service.request('/error?marker=first'),
      service.request('/error?kind=handled&marker=second'),
    ]);
    const eventOf = (response) =>
      waitFor(() => sentry.events().find((e) => e.contexts?.trace?.trace_id === response.json.trace_id), {
        message: 'the event of the request',
      });
    const [firstEvent, secondEvent] = await Promise.all([eventOf(first), eventOf(second)]);
    assert.match(firstEvent.request.url, /\/error\?marker=first$/);
    assert.match(secondEvent.request.url, /\/error\?kind=handled&marker=second$/);
    assert.equal(firstEvent.transaction, 'GET /error');
    assert.equal(secondEvent.transaction, 'GET /error');
  });

  it('scrubs PII from span attributes, Sentry events and logs', async () => {
    const secret = 'hunter2-secret';
    const email = 'ada.lovelace@example.com';
    const response = await service.request(
      `/error?password=${secret}&email=${encodeURIComponent(email)}&card=4111111111111111`,
      { headers: { authorization: `Bearer ${secret}`, cookie: `session=${secret}` } },
    );
    const traceId = response.json.trace_id;
    const event = await waitFor(() => sentry.events().find((e) => e.contexts?.trace?.trace_id === traceId), {
      message: 'the event',
    });
    await waitFor(() => otlp.spans().some((s) => s.traceId === traceId && s.kind === SERVER), { message: 'span' });
    await waitFor(() => otlp.logRecords().some((r) => r.traceId === traceId && r.body === 'request'), { message: 'logs' });
    const everything = JSON.stringify({
      event,
      spans: otlp.spans().filter((s) => s.traceId === traceId),
      logs: otlp.logRecords().filter((r) => r.traceId === traceId),
      stdout: service.logs.filter((l) => l.trace_id === traceId),
    });
    for (const needle of [secret, email, encodeURIComponent(email), '4111111111111111']) {
      assert.ok(!everything.includes(needle), `${needle} leaked`);
    }
    assert.match(event.request.url, /password=\[Filtered\]/);
  });
});

describe('Sentry performance data (SENTRY_TRACES_SAMPLE_RATE)', () => {
  it('sends the same spans, same ids, to Sentry OTLP endpoint when the rate is 1', async () => {
    const otlp = await new OtlpReceiver().start();
    const sentry = await new SentryReceiver().start();
    const service = await startService({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlp.tracesEndpoint,
      SENTRY_DSN: sentry.dsn,
      SENTRY_TRACES_SAMPLE_RATE: '1',
    });
    try {
      const response = await service.request('/error');
      const traceId = response.json.trace_id;
      const toSentry = await waitFor(() => sentry.spans().find((s) => s.traceId === traceId && s.kind === SERVER), {
        message: 'the server span at Sentry OTLP endpoint',
      });
      const toTempo = await waitFor(() => otlp.spans().find((s) => s.traceId === traceId && s.kind === SERVER), {
        message: 'the server span at the OTLP endpoint',
      });
      assert.equal(toSentry.spanId, toTempo.spanId);
      const auth = sentry.requests.find((r) => r.path.includes('/integration/otlp/')).headers['x-sentry-auth'];
      assert.match(auth, /sentry_key=public/);
      // Still one id on the error event: Sentry did not start spans of its own.
      const event = await waitFor(() => sentry.events()[0], { message: 'event' });
      assert.equal(event.contexts.trace.trace_id, traceId);
    } finally {
      await service.stop();
      await otlp.close();
      await sentry.close();
    }
  });
});

describe('an error storm (SENTRY_MAX_EVENTS_PER_SECOND)', () => {
  it('sends events up to the budget; the rest are answered, logged and counted, not built', async () => {
    const sentry = await new SentryReceiver().start();
    // One event, then one every 20 s: the other four requests are over the budget.
    const service = await startService({ SENTRY_DSN: sentry.dsn, SENTRY_MAX_EVENTS_PER_SECOND: '0.05' });
    const responses = [];
    let handled;
    try {
      for (let i = 0; i < 4; i += 1) {
        responses.push(await service.request('/error'));
      }
      handled = await service.request('/error?kind=handled');
      assert.deepEqual(
        [...responses, handled].map((r) => r.status),
        [500, 500, 500, 500, 500],
      );
      assert.equal(handled.json.sentry_event_id, undefined);
      await waitFor(() => sentry.events()[0], { message: 'the first error event' });
      const dropped = samples(await service.metrics(), 'telemetry_dropped_total', {
        signal: 'errors',
        reason: 'backpressure',
      })[0].value;
      assert.equal(dropped, 4);
      const events = sentry.events();
      assert.equal(events.length, 1);
      assert.equal(events[0].contexts.trace.trace_id, responses[0].json.trace_id);
    } finally {
      await service.stop();
      await sentry.close();
    }
    // Every error still has its log line with its own trace id (stdout is complete once stopped).
    const logged = new Set(service.logs.filter((l) => l.level === 'error').map((l) => l.trace_id));
    for (const response of [...responses, handled]) {
      assert.ok(logged.has(response.json.trace_id), `no error line for ${response.json.trace_id}`);
    }
    // Sentry hears of the loss in a client report (sent at shutdown at the latest).
    const discarded = sentry.envelopes
      .flatMap((envelope) => envelope.items)
      .filter((item) => item.header.type === 'client_report')
      .flatMap((item) => item.payload.discarded_events ?? []);
    const backpressure = discarded.filter((d) => d.reason === 'backpressure' && d.category === 'error');
    assert.equal(
      backpressure.reduce((sum, d) => sum + d.quantity, 0),
      4,
      JSON.stringify(discarded),
    );
  });
});
