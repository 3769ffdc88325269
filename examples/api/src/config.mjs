// The service's configuration: environment variables only, validated once at start-up.
//
// Standard names are used where a standard exists (OTEL_* from the OpenTelemetry spec, SENTRY_*
// from Sentry's SDK docs), so one set of variables configures every service in the stack. Every
// problem is collected before failing, so a misconfigured deployment shows all of them at once.

import { readFileSync } from 'node:fs';

const _PACKAGE = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const _PINO_LEVEL = Object.freeze({
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  warning: 'warn',
  error: 'error',
  fatal: 'fatal',
  critical: 'fatal',
  silent: 'silent',
});
// OTEL_TRACES_SAMPLER values (the spec's built-in samplers), in any case.
// https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/#general-sdk-configuration
const _SAMPLERS = Object.freeze([
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
]);
// Sentry DSN shape: {protocol}://{public_key}[:{secret}]@{host}[:{port}]/{path/}{project_id}
const _DSN = /^(https?):\/\/([\w-]+)(?::[\w-]+)?@([^/:]+|\[[0-9a-fA-F:]+\])(?::(\d+))?\/(.*\/)?(\d+)\/?$/;

export class ConfigError extends Error {
  constructor(problems) {
    super(`invalid configuration: ${problems.join('; ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * Reads and validates the configuration from `env`.
 * @param {Record<string, string | undefined>} env
 * @throws {ConfigError} naming every offending variable
 */
/** The configuration, or exit 2 naming every offending variable: the start-up contract. */
export function loadConfigOrExit(env = process.env) {
  try {
    return loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`api: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

export function loadConfig(env = process.env) {
  const problems = [];
  const read = new _Reader(env, problems);

  const fastapiUrl = read.url('FASTAPI_URL', 'http://127.0.0.1:8000');
  const gitCommit = read.string('GIT_COMMIT', 'unknown');
  const release = read.string('SENTRY_RELEASE', undefined);
  const otlpBase = read.url('OTEL_EXPORTER_OTLP_ENDPOINT', undefined);

  const config = {
    port: read.integer('PORT', 9091, { min: 0, max: 65535 }),
    // '::' accepts IPv6 and IPv4 (dual-stack): the same image serves IPv4 compose networks and
    // IPv6-only Railway private networks.
    host: read.string('HOST', '::'),
    // Python's names work too (WARNING, CRITICAL), so one LOG_LEVEL can serve both services.
    logLevel: _PINO_LEVEL[read.oneOf('LOG_LEVEL', 'info', Object.keys(_PINO_LEVEL), { lowerCase: true })],
    // `sampled`: a request's access line follows its trace's sampling decision (5xx always
    // logged), so at 10% tracing the log volume and its cost shrink with the traces. `all`: every
    // request, whatever the sampler says.
    accessLog: read.oneOf('ACCESS_LOG', 'sampled', ['sampled', 'all'], { lowerCase: true }),
    version: release ?? _PACKAGE.version,
    commit: gitCommit,

    otel: {
      serviceName: read.string('OTEL_SERVICE_NAME', 'api'),
      // OTLP/HTTP. The base endpoint (the stack's collector) gets /v1/traces and /v1/logs appended;
      // a per-signal variable is used as it is and wins for its signal.
      // https://opentelemetry.io/docs/specs/otel/protocol/exporter/#endpoint-urls-for-otlphttp
      tracesEndpoint: read.url('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', _signalUrl(otlpBase, 'traces')),
      logsEndpoint: read.url('OTEL_EXPORTER_OTLP_LOGS_ENDPOINT', _signalUrl(otlpBase, 'logs')),
      // Bounded buffers: when a backend is slow or down, telemetry is dropped and counted
      // (telemetry_dropped_total) rather than held in memory or waited for.
      spanQueueSize: read.integer('OTEL_BSP_MAX_QUEUE_SIZE', 2048, { min: 1, max: 1_000_000 }),
      spanDelayMs: read.integer('OTEL_BSP_SCHEDULE_DELAY', 5000, { min: 1, max: 600_000 }),
      logQueueSize: read.integer('OTEL_BLRP_MAX_QUEUE_SIZE', 2048, { min: 1, max: 1_000_000 }),
      logDelayMs: read.integer('OTEL_BLRP_SCHEDULE_DELAY', 1000, { min: 1, max: 600_000 }),
      // Milliseconds, as the OpenTelemetry spec defines it (the Python SDK reads seconds).
      exportTimeoutMs: read.integer('OTEL_EXPORTER_OTLP_TIMEOUT', 5000, { min: 1, max: 60_000 }),
    },

    sentry: {
      dsn: read.dsn('SENTRY_DSN'),
      environment: read.string('SENTRY_ENVIRONMENT', 'development'),
      release: release ?? `${_PACKAGE.name}@${_PACKAGE.version}`,
      sampleRate: read.rate('SENTRY_SAMPLE_RATE', 1.0),
      // Share of traces also sent to Sentry as performance data: the same OTel spans, exported
      // over OTLP to Sentry's endpoint, so ids match everywhere. 0 keeps Sentry for errors only.
      tracesSampleRate: read.rate('SENTRY_TRACES_SAMPLE_RATE', 0.0),
      // Envelope POSTs that take longer are abandoned (and counted as dropped errors).
      timeoutMs: read.integer('SENTRY_TIMEOUT_MS', 5000, { min: 1, max: 60_000 }),
      // At most this many events a second, in bursts of one second's worth: in an error storm
      // each event costs milliseconds of CPU for an issue Sentry groups into one. Errors over the
      // limit are still answered, logged and traced, and counted as dropped. 0 = no limit.
      maxEventsPerSecond: read.number('SENTRY_MAX_EVENTS_PER_SECOND', 10, { min: 0, max: 10_000 }),
    },

    monitor: {
      targets: read.targets('MONITOR_TARGETS', _defaultTargets(fastapiUrl)),
      intervalMs: read.integer('MONITOR_INTERVAL_MS', 15_000, { min: 100, max: 86_400_000 }),
      timeoutMs: read.integer('MONITOR_TIMEOUT_MS', 5000, { min: 1, max: 120_000 }),
    },
  };

  _checkSampler(read);

  if (problems.length > 0) {
    throw new ConfigError(problems);
  }
  return Object.freeze(config);
}

// otel.mjs builds the sampler from OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG; they are checked
// here with every other variable, so that a typo stops start-up naming it.
function _checkSampler(read) {
  const sampler = read.oneOf('OTEL_TRACES_SAMPLER', 'parentbased_always_on', _SAMPLERS, { lowerCase: true });
  const ratio = read.rate('OTEL_TRACES_SAMPLER_ARG', undefined);
  if (ratio !== undefined && sampler !== undefined && !sampler.endsWith('traceidratio')) {
    // The spec says ignore it; whoever set only the ratio would get every trace.
    read._fail(
      'OTEL_TRACES_SAMPLER_ARG',
      'only read by the traceidratio samplers: set OTEL_TRACES_SAMPLER too, e.g. parentbased_traceidratio',
      read._raw('OTEL_TRACES_SAMPLER_ARG'),
    );
  }
}

// The FastAPI sample's routes, so a fresh `docker compose up` has realistic traffic on the
// dashboards: steady health checks, some latency, and now and then a deliberate error (which that
// service answers with 500, so a 500 counts as success for that target).
function _defaultTargets(fastapiUrl) {
  if (fastapiUrl === undefined) {
    return [];
  }
  const base = fastapiUrl.replace(/\/+$/, '');
  return [
    `${base}/hello?name=monitor`,
    `${base}/health`,
    `${base}/slow?ms=250`,
    `${base}/error every=10 expect=500`,
  ].join(',');
}

class _Reader {
  constructor(env, problems) {
    this.env = env;
    this.problems = problems;
  }

  _raw(name) {
    const value = this.env[name];
    // Compose passes `VAR: ${VAR:-}` through as an empty string: treat blank as unset.
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  _fail(name, message, value) {
    this.problems.push(`${name}: ${message} (got ${JSON.stringify(value)})`);
    return undefined;
  }

  string(name, fallback) {
    return this._raw(name) ?? fallback;
  }

  integer(name, fallback, { min, max }) {
    const raw = this._raw(name);
    if (raw === undefined) {
      return fallback;
    }
    if (!/^[+-]?\d+$/.test(raw)) {
      return this._fail(name, 'must be an integer', raw);
    }
    const value = Number(raw);
    if (value < min || value > max) {
      return this._fail(name, `must be between ${min} and ${max}`, raw);
    }
    return value;
  }

  rate(name, fallback) {
    return this.number(name, fallback, { min: 0, max: 1 });
  }

  number(name, fallback, { min, max }) {
    const raw = this._raw(name);
    if (raw === undefined) {
      return fallback;
    }
    const value = Number(raw);
    if (!Number.isFinite(value) || !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(raw)) {
      return this._fail(name, `must be a number between ${min} and ${max}`, raw);
    }
    if (value < min || value > max) {
      return this._fail(name, `must be between ${min} and ${max}`, raw);
    }
    return value;
  }

  oneOf(name, fallback, choices, { lowerCase = false } = {}) {
    const raw = this._raw(name);
    if (raw === undefined) {
      return fallback;
    }
    const value = lowerCase ? raw.toLowerCase() : raw;
    if (!choices.includes(value)) {
      return this._fail(name, `must be one of ${choices.join(', ')}`, raw);
    }
    return value;
  }

  url(name, fallback) {
    const raw = this._raw(name);
    if (raw === undefined) {
      return fallback;
    }
    return _httpUrl(raw) ? raw : this._fail(name, 'must be an absolute http(s) URL', raw);
  }

  dsn(name) {
    const raw = this._raw(name);
    if (raw === undefined) {
      return undefined;
    }
    if (!_DSN.test(raw)) {
      return this._fail(name, 'not a Sentry DSN (https://KEY@HOST/PROJECT_ID)', raw);
    }
    return raw;
  }

  // `URL[ every=N][ expect=STATUS]`, comma-separated; `none` disables probing.
  targets(name, fallback) {
    const raw = this._raw(name) ?? fallback;
    if (raw === undefined || raw === 'none') {
      return [];
    }
    const targets = [];
    const seen = new Set();
    for (const entry of raw.split(',').map((part) => part.trim()).filter(Boolean)) {
      const target = _parseTarget(entry);
      if (typeof target === 'string') {
        this._fail(name, target, entry);
      } else if (seen.has(target.name)) {
        this._fail(name, 'duplicate target', entry);
      } else {
        seen.add(target.name);
        targets.push(target);
      }
    }
    return Object.freeze(targets);
  }
}

// `http://collector:4318` -> `http://collector:4318/v1/traces` (undefined stays undefined).
function _signalUrl(base, signal) {
  return base === undefined ? undefined : `${base.replace(/\/+$/, '')}/v1/${signal}`;
}

function _httpUrl(raw) {
  try {
    const url = new URL(raw);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}

// Returns the parsed target, or a string describing what is wrong with it.
function _parseTarget(entry) {
  const [rawUrl, ...options] = entry.split(/\s+/);
  if (!_httpUrl(rawUrl)) {
    return 'each target must be an absolute http(s) URL';
  }
  const url = new URL(rawUrl);
  const target = { url: url.href, every: 1, expect: undefined };
  for (const option of options) {
    const match = /^(every|expect)=(\d+)$/.exec(option);
    if (!match) {
      return `unknown target option ${JSON.stringify(option)} (use every=N or expect=STATUS)`;
    }
    const value = Number(match[2]);
    if (match[1] === 'every') {
      if (value < 1 || value > 10_000) {
        return 'every=N needs 1 <= N <= 10000';
      }
      target.every = value;
    } else {
      if (value < 100 || value > 599) {
        return 'expect=STATUS needs an HTTP status code';
      }
      target.expect = value;
    }
  }
  // The metric label: the URL without credentials, so a password never becomes a time series.
  url.username = '';
  url.password = '';
  target.name = url.href;
  return Object.freeze(target);
}
