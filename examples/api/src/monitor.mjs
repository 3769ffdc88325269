// The API monitor: probes each target every MONITOR_INTERVAL_MS and records what it saw.
//
// Each probe is the root of a new trace ("probe" span) whose HTTP client child carries
// `traceparent` and `sentry-trace` into the target, so the target's server spans join it. A target
// that goes down is reported to Sentry once per outage (on the up -> down transition), with a
// fingerprint per target so every outage of one target groups into one issue.

import http from 'node:http';
import https from 'node:https';

import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import * as Sentry from '@sentry/node';

import { exemplarFor, probeDuration, probeHttpStatus, probeSuccess } from './metrics.mjs';

const _tracer = trace.getTracer('signalbox-api-monitor');
// A probe reads at most this much of a response body: enough to prove it arrives, bounded memory.
const _MAX_BODY_BYTES = 64 * 1024;

class ProbeFailure extends Error {
  constructor(target, result) {
    super(`probe of ${target} failed: ${result.reason}${result.status ? ` (HTTP ${result.status})` : ''}`);
    this.name = 'ProbeFailure';
  }
}

export class Monitor {
  /**
   * @param {{ targets: readonly object[], intervalMs: number, timeoutMs: number }} options
   * @param {import('pino').Logger} logger
   */
  constructor({ targets, intervalMs, timeoutMs }, logger) {
    this._targets = targets;
    this._intervalMs = intervalMs;
    this._timeoutMs = timeoutMs;
    this._logger = logger;
    this._round = 0;
    this._timer = undefined;
    this._running = new Map();
    /** @type {Map<string, object>} last result per target name */
    this._state = new Map(
      targets.map((target) => [
        target.name,
        { target: target.name, up: null, checked_at: null, consecutive_failures: 0, down_since: null },
      ]),
    );
  }

  start() {
    if (this._targets.length === 0 || this._timer) {
      return;
    }
    this._tick();
    this._timer = setInterval(() => this._tick(), this._intervalMs);
  }

  /** Stops scheduling and waits for the probes in flight (each bounded by its timeout). */
  async stop() {
    clearInterval(this._timer);
    this._timer = undefined;
    await Promise.allSettled(this._running.values());
  }

  /** The last result per target, for GET /targets. */
  snapshot() {
    return [...this._state.values()].map((state) => ({ ...state }));
  }

  _tick() {
    const round = this._round++;
    for (const target of this._targets) {
      // A probe still running (slow target, long timeout) is not started twice.
      if (round % target.every !== 0 || this._running.has(target.name)) {
        continue;
      }
      const probe = this._probe(target).finally(() => this._running.delete(target.name));
      this._running.set(target.name, probe);
    }
  }

  /** Probes `target` once, updating metrics, state, logs and Sentry. */
  _probe(target) {
    return Sentry.withIsolationScope(() =>
      _tracer.startActiveSpan(
        'probe',
        { kind: SpanKind.INTERNAL, root: true, attributes: { 'probe.target': target.name } },
        async (span) => {
          try {
            const result = await _request(target.url, this._timeoutMs);
            const expected =
              target.expect === undefined
                ? result.status >= 200 && result.status < 400
                : result.status === target.expect;
            result.success = result.reason === 'ok' && expected;
            if (result.reason === 'ok' && !expected) {
              result.reason = 'unexpected_status';
            }
            span.setAttributes({
              'probe.success': result.success,
              'probe.failure_reason': result.success ? '' : result.reason,
              'http.response.status_code': result.status,
            });
            if (!result.success) {
              span.setStatus({ code: SpanStatusCode.ERROR, message: result.reason });
            }
            this._record(target, result, span.spanContext());
            return result;
          } finally {
            span.end();
          }
        },
      ),
    );
  }

  _record(target, result, spanContext) {
    const labels = { target: target.name };
    probeSuccess.set(labels, result.success ? 1 : 0);
    probeHttpStatus.set(labels, result.status);
    // A failed probe's span has an error status, so the collector keeps its trace: only those
    // get an exemplar (a healthy probe's trace is kept only by chance).
    const exemplarLabels = result.success ? {} : exemplarFor(spanContext);
    probeDuration.observe({ labels, value: result.durationSeconds, exemplarLabels });

    const state = this._state.get(target.name);
    const wasUp = state.up;
    const now = new Date().toISOString();
    Object.assign(state, {
      up: result.success,
      status: result.status,
      reason: result.success ? null : result.reason,
      duration_seconds: result.durationSeconds,
      checked_at: now,
      trace_id: spanContext.traceId,
      consecutive_failures: result.success ? 0 : state.consecutive_failures + 1,
      down_since: result.success ? null : (state.down_since ?? now),
    });

    const fields = {
      target: target.name,
      status: result.status,
      reason: result.reason,
      duration_ms: Math.round(result.durationSeconds * 1000),
    };
    if (result.success) {
      if (wasUp === false) {
        this._logger.info(fields, 'target recovered');
      } else {
        this._logger.debug(fields, 'probe ok');
      }
      return;
    }
    this._logger.warn({ ...fields, consecutive_failures: state.consecutive_failures }, 'probe failed');
    if (wasUp !== false) {
      // First failure of an outage (or of the service's life): one Sentry event per outage.
      Sentry.withScope((scope) => {
        scope.setFingerprint(['probe-failure', target.name]);
        scope.setTag('probe.target', target.name);
        scope.setTag('probe.reason', result.reason);
        scope.setContext('probe', { ...fields, url: target.name, expected_status: target.expect ?? '2xx/3xx' });
        scope.setLevel('error');
        Sentry.captureException(new ProbeFailure(target.name, result));
      });
    }
  }
}

// One HTTP GET. Resolves (never rejects) with { status, reason, durationSeconds }.
function _request(url, timeoutMs) {
  const started = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (status, reason) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        resolve({ status, reason, durationSeconds: elapsed() });
      }
    };
    const module = url.startsWith('https:') ? https : http;
    const request = module.get(url, { headers: { 'user-agent': 'signalbox-api-monitor' } }, (response) => {
      let received = 0;
      response.on('data', (chunk) => {
        received += chunk.length;
        if (received > _MAX_BODY_BYTES) {
          // Enough seen: stop reading, the status is what counts.
          finish(response.statusCode, 'ok');
          request.destroy();
        }
      });
      response.on('end', () => finish(response.statusCode, 'ok'));
      response.on('error', (error) => finish(response.statusCode, _reason(error)));
    });
    // One deadline for the whole exchange: connect, headers and body.
    const timer = setTimeout(() => {
      finish(0, 'timeout');
      request.destroy(new Error('probe timeout'));
    }, timeoutMs);
    request.on('error', (error) => finish(0, _reason(error)));
  });
}

function _reason(error) {
  switch (error.code) {
    case 'ECONNREFUSED':
      return 'connection_refused';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'connection_reset';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'dns';
    case 'ETIMEDOUT':
      return 'timeout';
    default:
      return error.code ? error.code.toLowerCase() : 'error';
  }
}
