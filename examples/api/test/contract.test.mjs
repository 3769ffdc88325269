// The shared contract (examples/contract.yaml), checked against this service running for real.
//
// The FastAPI service's suite (examples/fastapi-app/tests/test_contract.py) checks the same file
// against that service: every case below comes from the file, so a rule changed there fails both
// suites until both services follow it.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';

import { parse } from 'yaml';

import { OtlpReceiver, SentryReceiver, waitFor } from './helpers/receivers.mjs';
import { parseMetrics, startService } from './helpers/service.mjs';

const SERVICE = 'api';
const REPO = new URL('../../../', import.meta.url);
const CONTRACT = parse(readFileSync(new URL('examples/contract.yaml', REPO), 'utf8'));
const SPAN_KIND_SERVER = 2;

/** A value the contract gives per service (a mapping by service name), or the shared one. */
const ours = (value) => (value !== null && typeof value === 'object' && SERVICE in value ? value[SERVICE] : value);
const hex = (bytes) => randomBytes(bytes).toString('hex');
const freshIds = () => ({ trace_id: hex(16), span_id: hex(8), other_trace_id: hex(16), other_span_id: hex(8) });
const fill = (headers = {}, ids = {}) =>
  Object.fromEntries(
    Object.entries(headers).map(([name, value]) => [name, value.replace(/\{(\w+)\}/g, (_m, key) => ids[key])]),
  );
const caseName = (c) => c.name ?? ours(c.path);

/** Metric families of the Prometheus text format: name -> { type, samples }. */
function families(text) {
  const samples = parseMetrics(text);
  const out = {};
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const suffix = { counter: '', histogram: '_bucket', gauge: '' }[type] ?? '';
    out[name] = { type, samples: samples.filter((s) => s.name === name + suffix) };
  }
  return out;
}

async function metricsText(service) {
  return (await service.request('/metrics')).text;
}

// --- the service under test ----------------------------------------------------------------

const otlp = new OtlpReceiver();
const sentry = new SentryReceiver();
let served;
let alone;

before(async () => {
  await Promise.all([otlp.start(), sentry.start()]);
  [served, alone] = await Promise.all([
    // Every signal on, sent to the loopback receivers through the BASE OTLP endpoint, and an
    // access line for every request (so unsampled requests can be seen too).
    startService({
      OTEL_SERVICE_NAME: SERVICE,
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.origin,
      SENTRY_DSN: sentry.dsn,
      ACCESS_LOG: 'all',
    }),
    // Started as its README's "Run it alone" says: no telemetry variables at all.
    startService({}),
  ]);
});

after(async () => {
  await Promise.all([served?.stop(), alone?.stop()]);
  await Promise.all([otlp.close(), sentry.close()]);
});

// --- metrics -------------------------------------------------------------------------------

describe('metrics', () => {
  for (const [name, rule] of Object.entries(CONTRACT.metrics)) {
    it(`${name}: type, labels and buckets`, async () => {
      await served.request('/'); // the request metrics exist once a request was served
      const family = families(await metricsText(served))[name];
      assert.ok(family, `${name} is not on /metrics`);
      assert.equal(family.type, rule.type);
      assert.ok(family.samples.length > 0, `${name} has no series`);
      for (const sample of family.samples) {
        const labels = Object.keys(sample.labels).filter((label) => label !== 'le');
        assert.deepEqual(labels.sort(), [...rule.labels].sort(), JSON.stringify(sample));
      }
      if (rule.buckets) {
        const { le: _le, ...one } = family.samples[0].labels;
        const bounds = family.samples
          .filter((s) => Object.entries(one).every(([k, v]) => s.labels[k] === v))
          .map((s) => (s.labels.le === '+Inf' ? Infinity : Number(s.labels.le)));
        assert.deepEqual(bounds, [...rule.buckets, Infinity]);
      }
    });
  }

  it('telemetry_dropped_total series exist from start-up', async () => {
    const present = parseMetrics(await metricsText(alone))
      .filter((s) => s.name === 'telemetry_dropped_total')
      .map((s) => `${s.labels.signal}/${s.labels.reason}`);
    for (const { signal, reason } of CONTRACT.metrics.telemetry_dropped_total.at_start) {
      assert.ok(present.includes(`${signal}/${reason}`), `${signal}/${reason} not in ${present}`);
    }
  });
});

// --- logs ----------------------------------------------------------------------------------

describe('logs', () => {
  const rules = CONTRACT.logs;

  it('every stdout line is a JSON record with the shared fields', async () => {
    for (const path of ['/', '/error', '/error?kind=handled', '/no/such/route']) {
      await served.request(path);
    }
    // stdout is written in batches (every 100 ms): wait for the last request's line.
    await waitFor(() => served.logs.some((l) => l.http_route === '<unmatched>'), { message: 'the lines' });
    for (const line of served.logs) {
      const missing = rules.every_line.filter((field) => !(field in line));
      assert.deepEqual(missing, [], `missing from ${JSON.stringify(line)}`);
      assert.match(line.time, new RegExp(rules.time));
      assert.ok(rules.levels.includes(line.level), JSON.stringify(line));
      assert.equal(line.service, SERVICE);
      if (line.trace_id) {
        for (const [field, pattern] of Object.entries(rules.in_a_trace)) {
          assert.match(line[field], new RegExp(pattern));
        }
      }
    }
  });

  for (const path of ['/', '/error?kind=bogus', '/error']) {
    it(`the access line of ${path}: fields and level`, async () => {
      const { trace_id: traceId, span_id: spanId } = freshIds();
      const response = await served.request(path, { headers: { traceparent: `00-${traceId}-${spanId}-01` } });
      const line = await waitFor(
        () => served.logs.find((l) => l.trace_id === traceId && 'http_route' in l),
        { message: `the access line of ${path}` },
      );
      for (const field of rules.access_line.fields) {
        assert.notEqual(line[field], undefined, `${field} missing from ${JSON.stringify(line)}`);
      }
      assert.equal(line.http_status, response.status);
      assert.equal(line.http_route, path.split('?')[0]);
      assert.equal(line.level, rules.access_line.level[`${Math.floor(response.status / 100)}xx`]);
    });
  }

  for (const [fixture, expected] of [
    ['served', ['sentry', 'traces', 'logs', 'metrics', 'exemplars']],
    ['alone', ['metrics']],
  ]) {
    it(`the start-up line says which telemetry is on (${fixture})`, () => {
      const rule = CONTRACT.startup_line;
      const service = fixture === 'served' ? served : alone;
      const line = service.logs.find((l) => String(l.message ?? '').startsWith(rule.message_starts_with));
      assert.ok(line, JSON.stringify(service.logs.slice(0, 5)));
      const telemetry = line[rule.field];
      assert.deepEqual(Object.keys(telemetry).sort(), [...rule.keys].sort());
      assert.deepEqual(
        Object.keys(telemetry)
          .filter((key) => telemetry[key])
          .sort(),
        [...expected].sort(),
      );
      assert.equal(line.message.includes(rule.exemplars_off_reason), !telemetry.exemplars, line.message);
    });
  }
});

// --- HTTP answers --------------------------------------------------------------------------

function assertErrorBody(body, code) {
  const rule = CONTRACT.http.error_body;
  assert.equal(typeof body, 'object', String(body));
  for (const field of rule.required) {
    assert.ok(typeof body[field] === 'string' && body[field] !== '', `${field} in ${JSON.stringify(body)}`);
  }
  assert.match(body.error, new RegExp(rule.code));
  assert.equal(body.error, code);
}

describe('HTTP answers', () => {
  for (const c of CONTRACT.http.bad_input) {
    it(`bad input: ${caseName(c)}`, async () => {
      const response = await served.request(ours(c.path));
      assert.equal(response.status, c.status, response.text);
      assertErrorBody(response.json, ours(c.error));
    });
  }

  for (const c of CONTRACT.http.server_errors) {
    it(`server error: ${c.path}`, async () => {
      const rules = CONTRACT.http;
      const response = await served.request(c.path);
      assert.equal(response.status, c.status);
      assertErrorBody(response.json, c.error);
      const traceId = response.json[rules.trace_id_field];
      assert.match(traceId, /^[0-9a-f]{32}$/);
      const eventId = response.json[rules.event_id_field];
      assert.ok(eventId, `no ${rules.event_id_field} in ${response.text}`);
      const event = await waitFor(() => sentry.events().find((e) => e.event_id === eventId), {
        message: `Sentry event ${eventId}`,
      });
      assert.equal(event.contexts.trace.trace_id, traceId);
    });
  }

  for (const path of CONTRACT.http.head.paths) {
    it(`HEAD ${path}`, async () => {
      const response = await served.request(path, { method: 'HEAD' });
      assert.equal(response.status, CONTRACT.http.head.status);
      assert.equal(response.text, '');
    });
  }
});

// --- privacy -------------------------------------------------------------------------------

describe('scrubbing', () => {
  for (const c of CONTRACT.scrub.cases) {
    it(c.name, async () => {
      const path = CONTRACT.scrub.path + (c.query ? `&${c.query}` : '');
      const response = await served.request(path, { headers: c.headers ?? {} });
      const traceId = response.json.trace_id;

      const event = await waitFor(() => sentry.events().find((e) => e.contexts?.trace?.trace_id === traceId), {
        message: 'the Sentry event',
      });
      const span = await waitFor(() => otlp.spans().find((s) => s.traceId === traceId), {
        message: 'the server span',
      });
      const records = await waitFor(
        () => {
          const found = otlp.logRecords().filter((r) => r.traceId === traceId);
          return found.length > 0 && found;
        },
        { message: 'the OTLP log records' },
      );
      // What the request carried was recorded, so scrubbing is what kept the values out.
      assert.match(String(span.attributes['url.query']), /kind=handled/);
      assert.ok(event.request?.headers);

      const outputs = {
        'Sentry event': JSON.stringify(event),
        span: JSON.stringify({ attributes: span.attributes, events: span.events }),
        'OTLP log records': JSON.stringify(records.map((r) => [r.body, r.attributes])),
        stdout: JSON.stringify(served.logs),
      };
      for (const [where, text] of Object.entries(outputs)) {
        for (const forbidden of c.forbidden) {
          assert.ok(!text.includes(forbidden), `${JSON.stringify(forbidden)} reached the ${where}`);
        }
      }
    });
  }
});

// --- configuration -------------------------------------------------------------------------

/** Runs the service with `env` until it exits (or 20 s pass): { code, stderr }. */
function runToExit(env) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', './src/instrument.mjs', 'src/server.mjs'], {
      cwd: new URL('examples/api/', REPO),
      env: { PATH: process.env.PATH, PORT: '0', MONITOR_TARGETS: 'none', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

describe('configuration', () => {
  for (const [name, rule] of Object.entries(CONTRACT.environment)) {
    for (const invalid of rule.invalid ?? []) {
      const { value, with: extra = {} } = typeof invalid === 'object' ? invalid : { value: invalid };
      it(`${name}=${value} stops start-up naming it`, async () => {
        const { code, signal, stderr } = await runToExit({ ...extra, [name]: value });
        assert.notEqual(signal, 'SIGKILL', `${name}=${JSON.stringify(value)} was accepted: the service started`);
        assert.equal(code, 2, stderr);
        assert.ok(stderr.includes(name), stderr);
      });
    }

    it(`the README documents ${name}`, () => {
      const readme = readFileSync(new URL(CONTRACT.services[SERVICE].readme, REPO), 'utf8');
      const row = readme.split('\n').find((line) => line.startsWith(`| \`${name}\` |`));
      assert.ok(row, `no README row for ${name}`);
      const defaultCell = row.split('|')[2];
      if (rule.default === null) {
        assert.ok(defaultCell.includes('unset'), row);
      } else {
        assert.ok(defaultCell.includes(`\`${rule.default}\``), row);
      }
      if (rule.unit) {
        assert.ok(row.includes(rule.unit), row);
      }
    });
  }

  it('OTEL_EXPORTER_OTLP_TIMEOUT is in milliseconds', async () => {
    const rule = CONTRACT.export_timeout_check;
    const hanging = new OtlpReceiver();
    hanging.mode = 'hang';
    await hanging.start();
    const service = await startService({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: hanging.tracesEndpoint,
      OTEL_EXPORTER_OTLP_TIMEOUT: String(rule.OTEL_EXPORTER_OTLP_TIMEOUT),
    });
    try {
      await service.request('/');
      const sent = performance.now();
      await waitFor(
        async () =>
          parseMetrics(await metricsText(service)).some(
            (s) => s.name === 'telemetry_dropped_total' && s.labels.signal === 'traces' && s.value > 0,
          ),
        { timeout: 15_000, message: 'the span counted as dropped' },
      );
      const elapsed = performance.now() - sent;
      assert.ok(
        elapsed >= rule.dropped_after_ms.min && elapsed <= rule.dropped_after_ms.max,
        `dropped after ${Math.round(elapsed)} ms`,
      );
    } finally {
      await service.stop();
      await hanging.close();
    }
  });
});

// --- propagation ---------------------------------------------------------------------------

const serverSpan = (marker) =>
  otlp.spans().find((s) => s.kind === SPAN_KIND_SERVER && String(s.attributes['url.query']).includes(marker));

describe('propagation', () => {
  const { path } = CONTRACT.propagation;
  for (const c of CONTRACT.propagation.cases) {
    it(c.name, async () => {
      const ids = freshIds();
      const marker = hex(6);
      const response = await served.request(`${path}?case=${marker}`, { headers: fill(c.headers, ids) });
      assert.equal(response.status, 200, response.text);
      if (c.sampled) {
        const span = await waitFor(() => serverSpan(marker), { message: 'the exported server span' });
        assert.equal(span.traceId === ids.trace_id, c.continued, JSON.stringify(span));
        assert.equal(span.parentSpanId, c.continued ? ids.span_id : '', JSON.stringify(span));
      } else {
        assert.ok(c.continued, 'an unsampled case is about a continued trace');
        await waitFor(() => served.logs.some((l) => l.trace_id === ids.trace_id), {
          message: 'the access line with the continued trace id',
        });
        // Spans leave in order: once a later request's span arrived, this one would have too.
        const sentinel = hex(6);
        await served.request(`${path}?case=${sentinel}`);
        await waitFor(() => serverSpan(sentinel), { message: "a later request's span" });
        assert.equal(serverSpan(marker), undefined, 'an unsampled trace was exported');
      }
    });
  }
});

// --- exemplars -----------------------------------------------------------------------------

async function exemplars(service, route) {
  const rule = CONTRACT.exemplars;
  return new Set(
    (await service.metrics())
      .filter((s) => s.name === `${rule.metric}_bucket` && s.labels.route === route && s.exemplar)
      .map((s) => s.exemplar.labels[rule.label]),
  );
}

describe('exemplars', () => {
  for (const setting of ['with_traces_endpoint', 'without_traces_endpoint']) {
    for (const c of CONTRACT.exemplars[setting]) {
      const headerNames = Object.keys(c.headers ?? {}).join(',');
      it(`${setting}: ${c.path}${headerNames ? ` with ${headerNames}` : ''}`, async () => {
        const service = setting === 'with_traces_endpoint' ? served : alone;
        const route = c.path.split('?')[0];
        const response = await service.request(c.path, { headers: fill(c.headers, freshIds()) });
        const traceId = response.json?.trace_id;
        const found = await exemplars(service, route);
        if (c.exemplar) {
          assert.ok(found.has(traceId), `${traceId} not among ${[...found]}`);
        } else if (traceId !== undefined) {
          assert.ok(!found.has(traceId), `${traceId} has an exemplar`);
        } else {
          assert.equal(found.size, 0);
        }
        if (setting === 'without_traces_endpoint') {
          assert.equal(found.size, 0);
        }
      });
    }
  }
});
