// Stock variant of examples/api/src/request-telemetry.mjs (see register.mjs), used with
// request-telemetry-instrument.mjs: the server span is instrumentation-http's and
// instrumentation-express's; this middleware keeps only what they do not do, the RED metrics and
// the access log, with the same rules as the service's.

import { TraceFlags, isSpanContextValid, trace } from '@opentelemetry/api';

import { recordHttpRequest } from './metrics.mjs';
import { scrubText } from './scrub.mjs';

const _METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);
const _QUIET_ROUTES = new Set(['/health', '/ready', '/metrics']);
export const UNMATCHED_ROUTE = '<unmatched>';

export function requestTelemetry({ logger, accessLog }) {
  return function requestTelemetryMiddleware(req, res, next) {
    const started = process.hrtime.bigint();
    const method = _METHODS.has(req.method) ? req.method : '_OTHER';
    const spanContext = trace.getActiveSpan()?.spanContext();
    // instrumentation-http runs 'close' listeners in the request's context (the server span's).
    res.on('close', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const status = res.writableFinished ? res.statusCode : 499;
      const route = req.route ? `${req.baseUrl}${String(req.route.path)}` : UNMATCHED_ROUTE;
      recordHttpRequest(method, route, `${Math.floor(status / 100)}xx`, seconds, spanContext);
      if (!_accessLogged(accessLog, spanContext, status)) {
        return;
      }
      const fields = {
        http_method: method,
        http_route: route,
        http_status: status,
        duration_ms: Math.round(seconds * 1000),
        path: scrubText(req.originalUrl.split('?', 1)[0]).slice(0, 256),
      };
      if (status >= 500) {
        logger.error(fields, 'request');
      } else if (_QUIET_ROUTES.has(route)) {
        logger.debug(fields, 'request');
      } else {
        logger.info(fields, 'request');
      }
    });
    next();
  };
}

function _accessLogged(accessLog, spanContext, status) {
  if (accessLog === 'all' || status >= 500 || !spanContext || !isSpanContextValid(spanContext)) {
    return true;
  }
  return (spanContext.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED;
}
