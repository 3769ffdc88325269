// The HTTP API: the monitor's view (/targets), a small inventory the FastAPI service's /chain route
// calls, a deliberate error, and the operational endpoints (/health, /ready, /metrics).

import { context, trace } from '@opentelemetry/api';
import * as Sentry from '@sentry/node';
import express from 'express';

import { renderMetrics } from './metrics.mjs';
import { requestTelemetry } from './request-telemetry.mjs';
import { scrubText } from './scrub.mjs';
import { sentryEventAllowed } from './sentry.mjs';
import { withRequestScope } from './sentry-requests.mjs';

const _CATALOG = new Map([
  ['SB-1001', { name: 'Signal lamp', in_stock: 12 }],
  ['SB-1002', { name: 'Relay interlock', in_stock: 3 }],
  ['SB-1003', { name: 'Point motor', in_stock: 0 }],
  ['SB-1004', { name: 'Track circuit', in_stock: 7 }],
  ['SB-1005', { name: 'Lever frame', in_stock: 1 }],
]);
const _SKU = /^[A-Za-z0-9-]{1,32}$/;
const _ERROR_KINDS = new Set(['unhandled', 'handled']);

class DeliberateError extends Error {
  constructor(message = 'deliberate error for Signalbox demos') {
    super(message);
    this.name = 'DeliberateError';
  }
}

/**
 * @param {{
 *   service: { name: string, version: string, commit: string, environment: string },
 *   logger: import('pino').Logger,
 *   monitor: { snapshot(): object[] },
 *   isReady: () => boolean,
 *   accessLog?: 'sampled' | 'all',
 * }} deps
 */
export function createApp({ service, logger, monitor, isReady, accessLog = 'sampled' }) {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(requestTelemetry({ logger, accessLog }));

  app.get('/', (_req, res) => {
    res.json({
      service: service.name,
      version: service.version,
      commit: service.commit,
      environment: service.environment,
      routes: ['/health', '/ready', '/metrics', '/targets', '/inventory/:sku', '/error'],
    });
  });

  app.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/ready', (_req, res) => {
    if (isReady()) {
      res.json({ status: 'ready' });
    } else {
      res.status(503).json({ status: 'shutting_down' });
    }
  });

  app.get('/metrics', async (req, res) => {
    const { contentType, body } = await renderMetrics(req.get('accept'));
    res.type(contentType).send(body);
  });

  app.get('/targets', (_req, res) => {
    res.json({ targets: monitor.snapshot() });
  });

  app.get('/inventory/:sku', (req, res) => {
    const { sku } = req.params;
    if (!_SKU.test(sku)) {
      res.status(400).json({
        error: 'invalid_sku',
        message: 'sku must be 1 to 32 letters, digits or dashes',
      });
      return;
    }
    const item = _CATALOG.get(sku);
    if (!item) {
      res.status(404).json({ error: 'not_found', sku });
      return;
    }
    res.json({ sku, ...item });
  });

  app.get('/error', (req, res) => {
    const kind = req.query.kind ?? 'unhandled';
    if (typeof kind !== 'string' || !_ERROR_KINDS.has(kind)) {
      res.status(400).json({ error: 'invalid_kind', message: 'kind must be "unhandled" or "handled"' });
      return;
    }
    if (kind === 'handled') {
      const eventId = sentryEventAllowed()
        ? withRequestScope(req, () => Sentry.captureException(new DeliberateError('deliberate handled error')))
        : undefined;
      logger.error({ sentry_event_id: eventId }, 'deliberate handled error');
      res.status(500).json(_errorBody('deliberate_error', 'deliberate handled error', eventId));
      return;
    }
    // Thrown through Express into Sentry's error handler, then ours.
    throw new DeliberateError();
  });

  app.use(function notFound(req, res) {
    res.status(404).json({ error: 'not_found', message: `no route for ${req.method} ${scrubText(req.path)}` });
  });

  app.use(function sentryRequestScope(error, req, _res, next) {
    withRequestScope(req, () => next(error));
  });
  // Not setupExpressErrorHandler: its request middleware would write request data into the
  // process-wide scope (there is no per-request one, see sentry-requests.mjs). Server errors over
  // the SENTRY_MAX_EVENTS_PER_SECOND budget skip it: they are logged and traced below all the same.
  const sentryErrorHandler = Sentry.expressErrorHandler();
  app.use(function sentryErrors(error, req, res, next) {
    if (_clientStatus(error) === undefined && !sentryEventAllowed()) {
      next(error);
      return;
    }
    sentryErrorHandler(error, req, res, next);
  });

  // Errors reach here after Sentry captured them (5xx only; 4xx are the client's problem).
  app.use(function errorResponse(error, req, res, _next) {
    const status = _clientStatus(error) ?? 500;
    if (status >= 500) {
      logger.error({ err: error, sentry_event_id: res.sentry }, 'request failed');
      const span = trace.getActiveSpan();
      if (span?.isRecording()) {
        // The exception event on the server span (scrubbed by the exporter, like the log line).
        span.recordException(error);
        res.locals.errorType = error?.name ?? 'Error';
      }
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res
      .status(status)
      .json(
        status >= 500
          ? _errorBody('internal_error', 'internal server error', res.sentry)
          : { error: 'bad_request', message: scrubText(error.expose ? error.message : 'bad request') },
      );
  });

  return app;
}

function _errorBody(error, message, sentryEventId) {
  const spanContext = trace.getSpan(context.active())?.spanContext();
  return {
    error,
    message,
    ...(spanContext ? { trace_id: spanContext.traceId } : {}),
    ...(sentryEventId ? { sentry_event_id: sentryEventId } : {}),
  };
}

// 4xx errors raised by Express itself (malformed URL encoding, oversized bodies, ...).
function _clientStatus(error) {
  const status = error?.status ?? error?.statusCode;
  return Number.isInteger(status) && status >= 400 && status < 500 ? status : undefined;
}
