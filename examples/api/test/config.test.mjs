// Configuration: defaults, validation, and fail-fast start-up naming the variable.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

import { ConfigError, loadConfig } from '../src/config.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function problemsOf(env) {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('loadConfig', () => {
  it('has working defaults: port 9091 dual-stack, service name api, FastAPI targets', () => {
    const config = loadConfig({});
    assert.equal(config.port, 9091);
    assert.equal(config.host, '::');
    assert.equal(config.otel.serviceName, 'api');
    assert.equal(config.otel.tracesEndpoint, undefined);
    assert.equal(config.sentry.dsn, undefined);
    assert.equal(config.sentry.tracesSampleRate, 0);
    assert.equal(config.accessLog, 'sampled');
    assert.equal(loadConfig({ ACCESS_LOG: 'ALL' }).accessLog, 'all');
    assert.deepEqual(
      config.monitor.targets.map((t) => [t.name, t.every, t.expect]),
      [
        ['http://127.0.0.1:8000/hello?name=monitor', 1, undefined],
        ['http://127.0.0.1:8000/health', 1, undefined],
        ['http://127.0.0.1:8000/slow?ms=250', 1, undefined],
        ['http://127.0.0.1:8000/error', 10, 500],
      ],
    );
  });

  it('sends OTLP to the base OTEL_EXPORTER_OTLP_ENDPOINT, a per-signal variable winning', () => {
    const base = loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector:4318/' }).otel;
    assert.equal(base.tracesEndpoint, 'http://otel-collector:4318/v1/traces');
    assert.equal(base.logsEndpoint, 'http://otel-collector:4318/v1/logs');
    const mixed = loadConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector:4318',
      OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: 'http://loki:3100/otlp/v1/logs',
    }).otel;
    assert.equal(mixed.tracesEndpoint, 'http://otel-collector:4318/v1/traces');
    assert.equal(mixed.logsEndpoint, 'http://loki:3100/otlp/v1/logs');
    assert.equal(loadConfig({}).otel.tracesEndpoint, undefined);
    assert.throws(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }), /OTEL_EXPORTER_OTLP_ENDPOINT/);
  });

  it('derives the default targets from FASTAPI_URL, and MONITOR_TARGETS replaces them', () => {
    const fromBase = loadConfig({ FASTAPI_URL: 'http://fastapi-app.railway.internal:8000/' });
    assert.equal(fromBase.monitor.targets[1].url, 'http://fastapi-app.railway.internal:8000/health');
    const explicit = loadConfig({
      FASTAPI_URL: 'http://ignored:1',
      MONITOR_TARGETS: ' http://a:1/x , https://b/y every=3 expect=204 ',
    });
    assert.deepEqual(
      explicit.monitor.targets.map((t) => [t.url, t.every, t.expect]),
      [
        ['http://a:1/x', 1, undefined],
        ['https://b/y', 3, 204],
      ],
    );
    assert.deepEqual(loadConfig({ MONITOR_TARGETS: 'none' }).monitor.targets, []);
  });

  it('keeps credentials out of the target label', () => {
    const [target] = loadConfig({ MONITOR_TARGETS: 'http://user:s3cret@host:8080/health' }).monitor.targets;
    assert.equal(target.name, 'http://host:8080/health');
    assert.equal(target.url, 'http://user:s3cret@host:8080/health');
  });

  it('treats blank variables as unset (compose passes ${VAR:-} as "")', () => {
    const config = loadConfig({ PORT: '', SENTRY_DSN: '  ', MONITOR_TARGETS: '' });
    assert.equal(config.port, 9091);
    assert.equal(config.sentry.dsn, undefined);
    assert.equal(config.monitor.targets.length, 4);
  });

  it('reports every bad variable at once, by name', () => {
    const problems = problemsOf({
      PORT: '99999',
      MONITOR_INTERVAL_MS: 'abc',
      MONITOR_TIMEOUT_MS: '1.5',
      SENTRY_TRACES_SAMPLE_RATE: '2',
      SENTRY_SAMPLE_RATE: 'half',
      SENTRY_DSN: 'not a dsn',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'tempo:4318',
      LOG_LEVEL: 'loud',
      ACCESS_LOG: 'sometimes',
      MONITOR_TARGETS: 'http://ok/,ftp://x/,http://ok/,http://y/ every=0,http://z/ retries=3',
    });
    const named = (variable) => problems.filter((p) => p.startsWith(`${variable}:`));
    for (const variable of [
      'PORT',
      'MONITOR_INTERVAL_MS',
      'MONITOR_TIMEOUT_MS',
      'SENTRY_TRACES_SAMPLE_RATE',
      'SENTRY_SAMPLE_RATE',
      'SENTRY_DSN',
      'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
      'LOG_LEVEL',
      'ACCESS_LOG',
    ]) {
      assert.equal(named(variable).length, 1, `${variable} in ${JSON.stringify(problems)}`);
    }
    // ftp://, the duplicate, every=0 and the unknown option: four problems with the targets.
    assert.equal(named('MONITOR_TARGETS').length, 4, JSON.stringify(problems));
  });

  it('accepts a Sentry DSN with a path prefix and an IPv6 host', () => {
    assert.equal(loadConfig({ SENTRY_DSN: 'https://key@o1.ingest.sentry.io/sub/42' }).sentry.dsn.endsWith('/42'), true);
    assert.ok(loadConfig({ SENTRY_DSN: 'http://key@[::1]:9000/1' }).sentry.dsn);
  });
});

function startWith(env) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', './src/instrument.mjs', 'src/server.mjs'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, PORT: '0', MONITOR_TARGETS: 'none', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      if (stdout.includes('"listening"')) {
        child.kill();
      }
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('start-up with a bad environment', () => {
  for (const [variable, value] of [
    ['MONITOR_INTERVAL_MS', 'abc'],
    ['SENTRY_TRACES_SAMPLE_RATE', '2'],
    ['SENTRY_DSN', 'https://sentry.example.com'],
    ['MONITOR_TARGETS', 'not-a-url'],
    ['ACCESS_LOG', 'errors'],
    ['SENTRY_MAX_EVENTS_PER_SECOND', '-1'],
  ]) {
    it(`exits non-zero naming ${variable}=${value}, before listening`, async () => {
      const { code, stdout, stderr } = await startWith({ [variable]: value });
      assert.equal(code, 2);
      assert.match(stderr, new RegExp(`invalid configuration: .*${variable}: `));
      assert.ok(stderr.includes(JSON.stringify(value)), stderr);
      assert.doesNotMatch(stdout, /listening/);
    });
  }
});
