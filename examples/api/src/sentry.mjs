// Sentry for errors, linked to OpenTelemetry: OTel owns tracing (spans, propagation), Sentry
// stamps every event with the active OTel span's trace id (openTelemetryIntegration), so an error,
// its trace in Tempo, its logs in Loki and the exemplar on /metrics share one id.
//
// Why @sentry/node 11 (see README "Sentry SDK version"): 10.x's own OpenTelemetry setup shares ids
// but does not continue an incoming W3C `traceparent`; 11.x lets our own tracer provider and a
// composite propagator (W3C + Sentry) own tracing, so both header styles are continued.

import http from 'node:http';
import https from 'node:https';

import * as Sentry from '@sentry/node';

import { countDropped } from './metrics.mjs';
import { Outage, failureReason } from './outage.mjs';
import { scrubBreadcrumb, scrubSentryEvent } from './scrub.mjs';
import { REPLACED_REQUEST_INTEGRATIONS, RUNTIME_CHANNEL_INJECTION } from './sentry-requests.mjs';

// Sentry's transport keeps at most this many envelopes in flight; more are dropped and counted.
const _BUFFER_SIZE = 64;

/**
 * Initialises the Sentry SDK. Without SENTRY_DSN the SDK stays disabled (nothing is sent).
 * @param {ReturnType<import('./config.mjs').loadConfig>} config
 */
export function initSentry(config) {
  const { sentry } = config;
  _budget = sentry.maxEventsPerSecond > 0 ? new EventBudget(sentry.maxEventsPerSecond) : undefined;
  // The SDK reads SENTRY_TRACES_SAMPLE_RATE itself and would then start Sentry-owned spans that
  // take precedence over the OTel span, breaking the shared trace id. Here that variable means
  // "share of OTel traces exported to Sentry" (otel.mjs), so the SDK must not see it.
  delete process.env.SENTRY_TRACES_SAMPLE_RATE;

  return Sentry.init({
    dsn: sentry.dsn,
    environment: sentry.environment,
    release: sentry.release,
    sampleRate: sentry.sampleRate,
    sendDefaultPii: false,
    integrations: (defaults) => [
      // Dedupe drops an error identical to the previous one: every /error request must produce
      // its own event, joinable to its own trace. (An error object is still captured only once;
      // the monitor deduplicates outages itself.)
      // Http and Express are replaced by a scope made only for an error (sentry-requests.mjs).
      ...defaults.filter((integration) => !['Dedupe', ...REPLACED_REQUEST_INTEGRATIONS].includes(integration.name)),
      Sentry.openTelemetryIntegration(),
    ],
    enableRuntimeChannelInjection: RUNTIME_CHANNEL_INJECTION,
    beforeSend: scrubSentryEvent,
    beforeBreadcrumb: scrubBreadcrumb,
    transport: _countingTransport,
    transportOptions: {
      bufferSize: _BUFFER_SIZE,
      httpModule: _httpModuleWithTimeout(sentry.timeoutMs),
    },
  });
}

/**
 * Whether an error may be sent to Sentry now: Sentry is on and the process is within
 * SENTRY_MAX_EVENTS_PER_SECOND. Asked before the event is built. A refused event is counted and
 * reported to Sentry as discarded for backpressure (client reports), so the stats show it.
 * @returns {boolean}
 */
export function sentryEventAllowed() {
  if (!Sentry.isEnabled()) {
    return false;
  }
  if (_budget === undefined || _budget.take()) {
    return true;
  }
  countDropped('errors', 1, 'backpressure');
  Sentry.getClient()?.recordDroppedEvent('backpressure', 'error');
  return false;
}

let _budget;

/** A token bucket: `rate` events a second on average, bursts of one second's worth (at least 1). */
export class EventBudget {
  constructor(rate, now = () => performance.now() / 1000) {
    this._rate = rate;
    this._capacity = Math.max(1, rate);
    this._tokens = this._capacity;
    this._now = now;
    this._updated = now();
  }

  take() {
    const now = this._now();
    this._tokens = Math.min(this._capacity, this._tokens + (now - this._updated) * this._rate);
    this._updated = now;
    if (this._tokens < 1) {
      return false;
    }
    this._tokens -= 1;
    return true;
  }
}

/** Sentry's OTLP traces endpoint for the DSN (URL and auth header), or undefined. */
export function sentryOtlpTraces(dsn) {
  return dsn ? Sentry.getOtlpTracesEndpoint(dsn) : undefined;
}

const _outage = new Outage('sentry', 'errors');

function _countingTransport(options) {
  const transport = Sentry.makeNodeTransport({
    ...options,
    recordDroppedEvent(reason, category, count = 1) {
      // Network errors, timeouts, a full buffer and rate limits all end here.
      if (category === 'error') {
        countDropped('errors', count, reason);
      }
      options.recordDroppedEvent(reason, category, count);
    },
  });
  return {
    ...transport,
    // Every delivery's outcome, for the outage log. A full buffer or a rate limit resolves
    // with no status: Sentry is not failing then.
    send(envelope) {
      return transport.send(envelope).then(
        (response) => {
          const status = response.statusCode;
          if (status >= 200 && status < 300) {
            _outage.delivered();
          } else if (status >= 500) {
            // The SDK records no loss for an error status: count the envelope's events here, as
            // `network_error`, the reason Sentry's Python SDK gives them.
            const [, items] = envelope;
            countDropped('errors', items.filter(([header]) => header.type === 'event').length, 'network_error');
            _outage.failed(`HTTP ${status}`);
          }
          return response;
        },
        (error) => {
          _outage.failed(failureReason(error));
          throw error;
        },
      );
    },
  };
}

// The SDK's agent sets no response timeout, so a Sentry that accepts connections but never
// answers would keep the transport buffer full forever.
function _httpModuleWithTimeout(timeoutMs) {
  return {
    request(options, callback) {
      const module = options.protocol === 'https:' ? https : http;
      const request = module.request(options, callback);
      request.setTimeout(timeoutMs, () => {
        request.destroy(new Error(`Sentry did not answer within ${timeoutMs} ms`));
      });
      return request;
    },
  };
}
