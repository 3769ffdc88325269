// Probe semantics against real loopback targets: success, HTTP 500, refused connection, timeout,
// a flapping target (one Sentry event per outage), and trace propagation into the target.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';

import { OtlpReceiver, SentryReceiver, refusedPort, waitFor } from './helpers/receivers.mjs';
import { samples, startService } from './helpers/service.mjs';

// Long enough that a loaded CI machine never times out a loopback probe by accident.
const TIMEOUT_MS = 1000;

class Target {
  constructor() {
    this.status = 200;
    this.hang = false;
    this.hits = [];
    this._hanging = new Set();
    this.server = http.createServer((req, res) => {
      this.hits.push({ path: req.url, headers: req.headers });
      if (this.hang) {
        this._hanging.add(res);
        return;
      }
      res.writeHead(this.status, { 'content-type': 'text/plain' }).end('probe me');
    });
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.origin = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  async close() {
    for (const res of this._hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

describe('monitor', () => {
  let otlp;
  let sentry;
  let service;
  let healthy;
  let broken;
  let hanging;
  let flapping;
  let expected500;
  let names;

  before(async () => {
    otlp = await new OtlpReceiver().start();
    sentry = await new SentryReceiver().start();
    healthy = await new Target().start();
    broken = await new Target().start();
    broken.status = 500;
    hanging = await new Target().start();
    hanging.hang = true;
    flapping = await new Target().start();
    expected500 = await new Target().start();
    expected500.status = 500;
    const refused = `http://127.0.0.1:${await refusedPort()}/health`;
    names = {
      healthy: `${healthy.origin}/hello?name=monitor`,
      broken: `${broken.origin}/boom`,
      refused,
      hanging: `${hanging.origin}/slow`,
      flapping: `${flapping.origin}/flap`,
      expected500: `${expected500.origin}/error`,
    };
    service = await startService({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlp.tracesEndpoint,
      OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: otlp.logsEndpoint,
      SENTRY_DSN: sentry.dsn,
      MONITOR_INTERVAL_MS: '150',
      MONITOR_TIMEOUT_MS: String(TIMEOUT_MS),
      MONITOR_TARGETS: [
        names.healthy,
        names.broken,
        names.refused,
        names.hanging,
        names.flapping,
        `${names.expected500} every=3 expect=500`,
      ].join(','),
    });
  });

  after(async () => {
    await service?.stop();
    for (const closable of [otlp, sentry, healthy, broken, hanging, flapping, expected500]) {
      await closable?.close();
    }
  });

  const targetState = async (name) =>
    (await service.request('/targets')).json.targets.find((t) => t.target === name);

  it('500, refused and timeout each give probe_success 0 with the right status, reason and one Sentry issue', async () => {
    // Several rounds of failures: an outage, not a blip.
    for (const name of [names.broken, names.refused, names.hanging]) {
      await waitFor(async () => (await targetState(name))?.consecutive_failures >= 4, {
        message: `4 failed probes of ${name}`,
      });
    }
    const all = await service.metrics();
    const expect = [
      [names.broken, 500, 'unexpected_status'],
      [names.refused, 0, 'connection_refused'],
      [names.hanging, 0, 'timeout'],
    ];
    for (const [name, status, reason] of expect) {
      assert.equal(samples(all, 'probe_success', { target: name })[0].value, 0, name);
      assert.equal(samples(all, 'probe_http_status', { target: name })[0].value, status, name);
      const state = await targetState(name);
      assert.equal(state.up, false);
      assert.equal(state.reason, reason);

      const eventsOf = () => sentry.events().filter((e) => e.tags?.['probe.target'] === name);
      await waitFor(() => eventsOf().length > 0, { message: `the Sentry event for ${name}` });
      const events = eventsOf();
      assert.equal(events.length, 1, `one Sentry event for the outage of ${name}, got ${events.length}`);
      assert.deepEqual(events[0].fingerprint, ['probe-failure', name]);
      assert.equal(events[0].tags['probe.reason'], reason);
      assert.equal(events[0].contexts.probe.target, name);
      assert.equal(events[0].exception.values[0].type, 'ProbeFailure');
    }
    assert.equal(samples(all, 'probe_success', { target: names.healthy })[0].value, 1);
    assert.equal(samples(all, 'probe_http_status', { target: names.healthy })[0].value, 200);
  });

  it('gives up on a hanging target at its own timeout', async () => {
    const state = await targetState(names.hanging);
    // (Timers have millisecond granularity: allow them to fire a hair early.)
    assert.ok(state.duration_seconds >= TIMEOUT_MS / 1000 - 0.01, `${state.duration_seconds}s`);
    assert.ok(state.duration_seconds < TIMEOUT_MS / 1000 + 1, `${state.duration_seconds}s`);
    const all = await service.metrics();
    const [count] = samples(all, 'probe_duration_seconds_count', { target: names.hanging });
    const [sum] = samples(all, 'probe_duration_seconds_sum', { target: names.hanging });
    assert.ok(sum.value / count.value < TIMEOUT_MS / 1000 + 1);
    // Probes of a hanging target never overlap: at most one connection is open at a time.
    assert.ok(hanging.hits.length <= count.value + 1);
  });

  it('reports each outage of a flapping target once, and its recovery', async () => {
    await waitFor(async () => (await targetState(names.flapping))?.up === true, { message: 'flapping up' });
    for (let outage = 1; outage <= 2; outage++) {
      flapping.status = 503;
      await waitFor(async () => (await targetState(names.flapping))?.consecutive_failures >= 3, {
        message: `outage ${outage}`,
      });
      flapping.status = 200;
      await waitFor(async () => (await targetState(names.flapping))?.up === true, { message: `recovery ${outage}` });
    }
    const flappingEvents = () => sentry.events().filter((e) => e.tags?.['probe.target'] === names.flapping);
    await waitFor(() => flappingEvents().length >= 2, { message: 'the second outage event' });
    const events = flappingEvents();
    assert.deepEqual(
      events.map((e) => e.tags['probe.reason']),
      ['unexpected_status', 'unexpected_status'],
      'one event per outage',
    );
    // Same fingerprint: Sentry groups both outages into one issue.
    assert.deepEqual(events[0].fingerprint, events[1].fingerprint);
    await waitFor(
      () => service.logs.filter((l) => l.message === 'target recovered' && l.target === names.flapping).length === 2,
      { message: 'two "target recovered" log lines' },
    );
  });

  it('honours expect=STATUS and every=N', async () => {
    await waitFor(async () => (await targetState(names.expected500))?.up === true, { message: 'expected 500 ok' });
    const all = await service.metrics();
    assert.equal(samples(all, 'probe_success', { target: names.expected500 })[0].value, 1);
    assert.equal(samples(all, 'probe_http_status', { target: names.expected500 })[0].value, 500);
    assert.equal(sentry.events().filter((e) => e.tags?.['probe.target'] === names.expected500).length, 0);
    // every=3: about a third of the rounds.
    assert.ok(expected500.hits.length <= Math.ceil(healthy.hits.length / 3) + 1, `${expected500.hits.length} vs ${healthy.hits.length}`);
  });

  it('propagates traceparent and sentry-trace into the target, joined with span, log and event; failed probes get exemplars', async () => {
    const hit = healthy.hits.at(-1);
    const traceparent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(hit.headers.traceparent);
    assert.ok(traceparent, `traceparent header: ${hit.headers.traceparent}`);
    const [, traceId, parentId] = traceparent;
    assert.equal(hit.headers['sentry-trace'], `${traceId}-${parentId}-1`);

    const spans = await waitFor(
      () => {
        const found = otlp.spans().filter((s) => s.traceId === traceId);
        return found.length >= 2 && found;
      },
      { message: 'the probe trace' },
    );
    const root = spans.find((s) => s.name === 'probe');
    const client = spans.find((s) => s.spanId === parentId);
    assert.equal(root.parentSpanId, '');
    assert.equal(root.attributes['probe.target'], names.healthy);
    assert.equal(client.kind, 3); // CLIENT
    assert.equal(client.parentSpanId, root.spanId);

    // Exemplars mark failed probes only: the collector keeps every trace with an error.
    const exemplars = (target) =>
      samples(metrics, 'probe_duration_seconds_bucket', { target })
        .filter((s) => s.exemplar)
        .map((s) => s.exemplar.labels.trace_id);
    const metrics = await service.metrics();
    assert.deepEqual(exemplars(names.healthy), []);
    const exemplarTraceIds = exemplars(names.broken);
    assert.ok(exemplarTraceIds.length > 0);
    const exported = new Set(otlp.spans().filter((s) => s.name === 'probe').map((s) => s.traceId));
    await waitFor(() => exemplarTraceIds.every((id) => new Set(otlp.spans().map((s) => s.traceId)).has(id)), {
      message: 'exemplar traces exported',
    });
    assert.ok(exported.size > 0);

    // A failed probe's Sentry event and warning log carry that probe's trace id.
    const event = sentry.events().find((e) => e.tags?.['probe.target'] === names.broken);
    const failedTrace = event.contexts.trace.trace_id;
    await waitFor(() => otlp.spans().some((s) => s.traceId === failedTrace && s.name === 'probe'), {
      message: 'the failed probe span',
    });
    assert.ok(service.logs.some((l) => l.message === 'probe failed' && l.trace_id === failedTrace));
    await waitFor(() => otlp.logRecords().some((r) => r.traceId === failedTrace && r.body === 'probe failed'), {
      message: 'the failed probe OTLP log',
    });
  });
});
