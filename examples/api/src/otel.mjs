// OpenTelemetry traces and logs: OTLP/HTTP (JSON) exporters behind the SDK's batch processors.
//
// A backend that is down or hanging must never slow a request: spans and log records wait in the
// batch processor's queue of fixed size (a full queue refuses new items), exports give up after
// OTEL_EXPORTER_OTLP_TIMEOUT, and whatever cannot be queued or delivered is dropped and counted in
// telemetry_dropped_total{signal,reason}.

import {
  TraceFlags,
  context,
  createNoopMeter,
  isSpanContextValid,
  logs,
  propagation,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  CompositePropagator,
  ExportResultCode,
  isTracingSuppressed,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from '@opentelemetry/core';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import {
  defaultResource,
  detectResources,
  envDetector,
  resourceFromAttributes,
} from '@opentelemetry/resources';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { ATTR_ERROR_TYPE, ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { SentryPropagator } from '@sentry/opentelemetry';

import { countDropped, enableExemplars } from './metrics.mjs';
import { Outage, failureKind, failureReason } from './outage.mjs';
import { FILTERED, isSensitiveKey, scrubStack, scrubText } from './scrub.mjs';

const _MAX_EXPORT_BATCH = 512;

/**
 * Creates and registers the global tracer and logger providers.
 * @param {ReturnType<import('./config.mjs').loadConfig>} config
 * @param {{ sentryOtlp?: { url: string, headers: Record<string, string> } }} [extra]
 */
export function startOpenTelemetry(config, { sentryOtlp } = {}) {
  const { otel } = config;
  const resource = defaultResource()
    .merge(detectResources({ detectors: [envDetector] }))
    .merge(
      resourceFromAttributes({
        [ATTR_SERVICE_NAME]: otel.serviceName,
        [ATTR_SERVICE_VERSION]: config.version,
        'deployment.environment.name': config.sentry.environment,
      }),
    );

  const spanProcessors = [];
  if (otel.tracesEndpoint) {
    enableExemplars();
    spanProcessors.push(
      _batchSpanProcessor(
        new OTLPTraceExporter({ url: otel.tracesEndpoint, timeoutMillis: otel.exportTimeoutMs }),
        otel,
        new Outage('traces', 'traces'),
      ),
    );
  }
  if (sentryOtlp && config.sentry.tracesSampleRate > 0) {
    // The same spans (same ids) to Sentry as performance data, for a share of traces.
    spanProcessors.push(
      new _TraceShareSpanProcessor(
        config.sentry.tracesSampleRate,
        _batchSpanProcessor(
          new OTLPTraceExporter({ ...sentryOtlp, timeoutMillis: otel.exportTimeoutMs }),
          otel,
          new Outage('sentry-traces', 'traces'),
        ),
      ),
    );
  }
  const tracerProvider = new TracerProvider({ resource, sampler: samplerFromEnv(), spanProcessors });
  // What sdk-trace-node's NodeTracerProvider.register() did before OpenTelemetry JS 3.0: the
  // context manager carries the active span across awaits and callbacks (AsyncLocalStorage; on
  // Node 24 without async hooks), the propagator reads and writes trace headers.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  // W3C traceparent is the common language between services; `sentry-trace` is continued and
  // sent too, so SDKs that only speak Sentry's header join the same trace. On extract the last
  // propagator wins: with both headers, traceparent does (as in the FastAPI service).
  propagation.setGlobalPropagator(
    new CompositePropagator({
      propagators: [
        new _SentryTracePropagator(),
        new W3CTraceContextPropagator(),
        new W3CBaggagePropagator(),
      ],
    }),
  );
  trace.setGlobalTracerProvider(tracerProvider);

  const processors = [];
  if (otel.logsEndpoint) {
    processors.push(
      _batchLogRecordProcessor(
        new OTLPLogExporter({ url: otel.logsEndpoint, timeoutMillis: otel.exportTimeoutMs }),
        otel,
        new Outage('logs', 'logs'),
      ),
    );
  }
  const loggerProvider = new LoggerProvider({ resource, processors });
  logs.setGlobalLoggerProvider(loggerProvider);

  return {
    tracerProvider,
    loggerProvider,
    /**
     * Flushes and stops both providers in parallel, giving up after `timeoutMs`. Resolves with
     * whether each exporting one finished in time: { traces?: boolean, logs?: boolean }.
     */
    async shutdown(timeoutMs) {
      const flushes = [];
      if (spanProcessors.length > 0) {
        flushes.push(['traces', tracerProvider.shutdown()]);
      }
      if (processors.length > 0) {
        flushes.push(['logs', loggerProvider.shutdown()]);
      }
      const finished = await Promise.all(flushes.map(([, flush]) => _finishedWithin(flush, timeoutMs)));
      return Object.fromEntries(flushes.map(([name], i) => [name, finished[i]]));
    },
  };
}

/**
 * The sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG name (default parent-based
 * always-on), as the OpenTelemetry spec defines them. Since OpenTelemetry JS 3.0 the SDK's
 * TracerProvider no longer reads these variables itself (only @opentelemetry/sdk-node does).
 * A value outside the spec's list throws, naming the variable: start-up stops.
 * https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/#general-sdk-configuration
 * @param {Record<string, string | undefined>} [env]
 */
export function samplerFromEnv(env = process.env) {
  const name = env.OTEL_TRACES_SAMPLER?.trim().toLowerCase() || 'parentbased_always_on';
  const arg = env.OTEL_TRACES_SAMPLER_ARG?.trim();
  const ratio = () => {
    const value = arg ? Number(arg) : 1;
    if (!(value >= 0 && value <= 1)) {
      throw new RangeError(`OTEL_TRACES_SAMPLER_ARG=${arg}: expected a ratio from 0 to 1`);
    }
    return new TraceIdRatioBasedSampler(value);
  };
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio();
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio() });
    default:
      throw new RangeError(`OTEL_TRACES_SAMPLER=${env.OTEL_TRACES_SAMPLER}: not a sampler this service knows`);
  }
}

/**
 * `sentry-trace` in both directions, from and to the active OpenTelemetry span. Extraction is
 * Sentry's own; injection is done here because with openTelemetryIntegration the Sentry SDK
 * leaves outgoing propagation to OpenTelemetry (its propagator then injects nothing).
 */
class _SentryTracePropagator {
  constructor() {
    this._sentry = new SentryPropagator();
  }

  inject(ctx, carrier, setter) {
    const spanContext = trace.getSpanContext(ctx);
    if (!spanContext || !isSpanContextValid(spanContext) || isTracingSuppressed(ctx)) {
      return;
    }
    const sampled = (spanContext.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? '1' : '0';
    setter.set(carrier, 'sentry-trace', `${spanContext.traceId}-${spanContext.spanId}-${sampled}`);
  }

  extract(ctx, carrier, getter) {
    // Without the header there is nothing to continue; Sentry's extract would still clone a scope
    // and make a trace id for every request, which nothing here reads (events take the ids of the
    // active OpenTelemetry span).
    if (getter.get(carrier, 'sentry-trace') === undefined) {
      return ctx;
    }
    return this._sentry.extract(ctx, carrier, getter);
  }

  fields() {
    return ['sentry-trace'];
  }
}

/**
 * The SDK's BatchSpanProcessor, exporting spans with PII scrubbed from their attributes, every span
 * it refuses (full queue) or fails to deliver counted as dropped.
 */
function _batchSpanProcessor(exporter, { spanQueueSize, spanDelayMs, exportTimeoutMs }, outage) {
  return new BatchSpanProcessor({
    exporter: _countingExporter(exporter, 'traces', _scrubSpan, outage),
    maxQueueSize: spanQueueSize,
    maxExportBatchSize: Math.min(_MAX_EXPORT_BATCH, spanQueueSize),
    scheduledDelayMillis: spanDelayMs,
    exportTimeoutMillis: exportTimeoutMs,
    selfObsMeterProvider: _queueFullCounter('traces'),
  });
}

/** Passes on the spans of a deterministic share of traces (chosen by trace id). */
class _TraceShareSpanProcessor {
  constructor(share, inner) {
    this._share = share;
    this._inner = inner;
  }

  onStart(span, parentContext) {
    this._inner.onStart(span, parentContext);
  }

  onEnd(span) {
    // The trace id's last 8 hex digits are uniformly random for W3C ids (and for ours).
    const position = Number.parseInt(span.spanContext().traceId.slice(-8), 16) / 0x1_0000_0000;
    if (position < this._share) {
      this._inner.onEnd(span);
    }
  }

  forceFlush() {
    return this._inner.forceFlush();
  }

  shutdown() {
    return this._inner.shutdown();
  }
}

/** The log counterpart of _batchSpanProcessor (records are scrubbed by the pino logger). */
function _batchLogRecordProcessor(exporter, { logQueueSize, logDelayMs, exportTimeoutMs }, outage) {
  return new BatchLogRecordProcessor({
    exporter: _countingExporter(exporter, 'logs', (record) => record, outage),
    maxQueueSize: logQueueSize,
    maxExportBatchSize: Math.min(_MAX_EXPORT_BATCH, logQueueSize),
    scheduledDelayMillis: logDelayMs,
    exportTimeoutMillis: exportTimeoutMs,
    selfObsMeterProvider: _queueFullCounter('logs'),
  });
}

/**
 * The batch processors' self-observability meter (their `selfObsMeterProvider` option), reduced to
 * the one figure the service reports from it: items a full queue refused, which the SDK counts in
 * otel.sdk.processor.{span,log}.processed with error.type=queue_full. (Failed exports are counted by
 * _countingExporter, with the failure's reason.) Every other instrument is a no-op.
 */
function _queueFullCounter(signal) {
  // A meter of its own whose other instruments are the API's shared no-op ones.
  const meter = Object.create(createNoopMeter());
  meter.createCounter = () => ({
    add(count, attributes) {
      if (attributes?.[ATTR_ERROR_TYPE] === 'queue_full') {
        countDropped(signal, count);
      }
    },
  });
  return { getMeter: () => meter };
}

// The exporter, with each batch's outcome told to the outage log and a failed batch counted as
// dropped.
function _countingExporter(exporter, signal, transform, outage) {
  return {
    export(items, resultCallback) {
      let done = false;
      const finish = (result) => {
        if (done) {
          return;
        }
        done = true;
        if (result.code === ExportResultCode.SUCCESS) {
          outage.delivered();
        } else {
          countDropped(signal, items.length, failureKind(result.error));
          outage.failed(failureReason(result.error));
        }
        resultCallback(result);
      };
      try {
        exporter.export(items.map(transform), finish);
      } catch (error) {
        finish({ code: ExportResultCode.FAILED, error });
      }
    },
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
    shutdown: () => exporter.shutdown(),
  };
}

// A ReadableSpan with PII scrubbed from attribute values (the span itself is left untouched:
// other processors may still read it).
function _scrubSpan(span) {
  return {
    name: span.name,
    kind: span.kind,
    spanContext: () => span.spanContext(),
    parentSpanContext: span.parentSpanContext,
    startTime: span.startTime,
    endTime: span.endTime,
    status: span.status?.message
      ? { ...span.status, message: scrubText(span.status.message) }
      : span.status,
    attributes: _scrubAttributes(span.attributes),
    links: span.links,
    events: span.events.map((event) =>
      event.attributes ? { ...event, attributes: _scrubAttributes(event.attributes) } : event,
    ),
    duration: span.duration,
    ended: span.ended,
    resource: span.resource,
    instrumentationScope: span.instrumentationScope,
    droppedAttributesCount: span.droppedAttributesCount,
    droppedEventsCount: span.droppedEventsCount,
    droppedLinksCount: span.droppedLinksCount,
  };
}

function _scrubAttributes(attributes) {
  const out = {};
  for (const [key, value] of Object.entries(attributes)) {
    if (isSensitiveKey(key) && value !== undefined && value !== '') {
      out[key] = FILTERED;
    } else if (typeof value === 'string') {
      out[key] = key === 'exception.stacktrace' ? scrubStack(value) : scrubText(value);
    } else if (Array.isArray(value)) {
      out[key] = value.map((item) => (typeof item === 'string' ? scrubText(item) : item));
    } else {
      out[key] = value;
    }
  }
  return out;
}

// Whether `promise` settled within `timeoutMs` (a flush that failed has finished too: what it
// could not send is counted as dropped).
function _finishedWithin(promise, timeoutMs) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
    timer.unref();
  });
  const settled = promise.then(
    () => true,
    () => true,
  );
  return Promise.race([settled, timeout]).finally(() => clearTimeout(timer));
}
