// Sentry for errors, linked to OpenTelemetry: OTel owns tracing (spans, propagation), Sentry
// stamps every event with the active OTel span's trace id (openTelemetryIntegration), so an error,
// its trace in Tempo, its logs in Loki and the exemplar on /metrics share one id.
//
// Why @sentry/node 11 (see README "Sentry SDK version"): 10.x's own OpenTelemetry setup shares ids
// but does not continue an incoming W3C `traceparent`; 11.x lets our own tracer provider and a
// composite propagator (W3C + Sentry) own tracing, so both header styles are continued.

import http from 'node:http';
import https from 'node:https';

import { httpRequestToRequestData } from '@sentry/core';
import * as Sentry from '@sentry/node';

import { countDropped } from './metrics.mjs';
import { Outage, failureReason } from './outage.mjs';
import { scrubBreadcrumb, scrubSentryEvent } from './scrub.mjs';

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
      // Http and Express are off: for every request they forked a scope, read the headers,
      // recorded a session and wrapped each Express layer: a fifth or more of the CPU of an
      // instrumented request, while Sentry is here for errors only (spans and propagation belong
      // to OpenTelemetry). An error gets its own scope when it happens (withRequestScope) and is
      // captured by expressErrorHandler (app.mjs).
      // Context and ContextLines are replaced by cheaper versions of themselves (see below).
      ...defaults.filter(
        (integration) => !['Dedupe', 'Http', 'Express', 'Context', 'ContextLines'].includes(integration.name),
      ),
      ..._cheapContextIntegrations(),
      _inAppContextLinesIntegration(),
      Sentry.openTelemetryIntegration(),
    ],
    // Its only users were the integrations removed above; it also hooks every module compile.
    enableRuntimeChannelInjection: false,
    beforeSend: scrubSentryEvent,
    beforeBreadcrumb: scrubBreadcrumb,
    transport: _countingTransport,
    transportOptions: {
      bufferSize: _BUFFER_SIZE,
      httpModule: _httpModuleWithTimeout(sentry.timeoutMs),
    },
  });
}

// The default Context integration refreshes the app's memory figures for every event with
// process.memoryUsage() (walks every heap space) and process.availableMemory() (reads cgroup
// files): a sixth of the CPU of a captured error. The static contexts stay; the app context
// keeps its start time (memory is on /metrics: process_resident_memory_bytes).
function _cheapContextIntegrations() {
  const appStartTime = new Date(Date.now() - process.uptime() * 1000).toISOString();
  return [
    Sentry.nodeContextIntegration({ app: false, device: { cpu: true, memory: false } }),
    {
      name: 'AppContext',
      processEvent(event) {
        event.contexts = {
          ...event.contexts,
          app: { app_start_time: appStartTime, ...event.contexts?.app },
        };
        return event;
      },
    },
  ];
}

// Source lines only for the application's own frames (in_app: not node_modules, not node:).
// Sentry's ContextLines has no such option and adds them to every frame; a library's source is
// the same in every event and costs a lookup per frame. Hand-written because the SDK offers no
// frame filter: the integration is given the in-app frames only, then the full list is restored.
function _inAppContextLinesIntegration() {
  const inner = Sentry.contextLinesIntegration();
  return {
    name: 'ContextLines',
    async processEvent(event, hint, client) {
      const restore = [];
      for (const exception of event.exception?.values ?? []) {
        const stacktrace = exception.stacktrace;
        if (Array.isArray(stacktrace?.frames)) {
          restore.push([stacktrace, stacktrace.frames]);
          stacktrace.frames = stacktrace.frames.filter((frame) => frame.in_app !== false);
        }
      }
      try {
        return await inner.processEvent(event, hint, client);
      } finally {
        for (const [stacktrace, frames] of restore) {
          stacktrace.frames = frames;
        }
      }
    },
  };
}

/**
 * Runs `fn` in a Sentry scope of its own describing `req` (request data for the event, the route
 * as transaction name), so nothing of one request's error leaks into another's.
 * @template T
 * @param {import('express').Request} req
 * @param {() => T} fn
 * @returns {T}
 */
export function withRequestScope(req, fn) {
  return Sentry.withIsolationScope((scope) => {
    scope.setSDKProcessingMetadata({ normalizedRequest: httpRequestToRequestData(req) });
    if (req.route) {
      scope.setTransactionName(`${req.method} ${req.baseUrl}${req.route.path}`);
    }
    return fn();
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
