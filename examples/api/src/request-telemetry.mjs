// One middleware per request: the server span, RED metrics with exemplars and the access log.
//
// Hand-written rather than @opentelemetry/instrumentation-http's incoming side (kept for outgoing
// requests) plus instrumentation-express: those build a dozen attributes, parse the URL and the
// Host header, bind the request and response emitters and wrap every Express layer for every
// request, whatever the sampling decision; at 10% sampling nine requests in ten paid all of that
// for a span that is never recorded. Here an unsampled request costs a trace id and a context;
// attributes are computed only for recorded spans, once the route template is known.
//
// Kept for its cost, measured on 2026-12-04 against the stock variant
// (bench/stock-node/request-telemetry*.mjs: instrumentation-http's incoming side and
// instrumentation-express, the same metrics and access log), GET /inventory/SB-1001 with every
// trace sampled and exported, Node 24.22:
// - instructions (callgrind, whole process, one keep-alive connection, after 8,000 warm-up
//   requests, two windows of 1,000): 581,000 a request here, 884,000 stock;
// - CPU (user + system, 20,000 requests, 3 alternating rounds, medians): 191 us here, 288 us stock.
// It saves a third of what the request costs the documented way (which also exports three spans a
// request: the server span, one for this middleware, one for the route handler). `make bench`
// measures it again: on 2026-12-05, 406k instructions a request here against 767k stock, 47%
// saved (four connections; bench/results.md has the latest figure). test/pins.test.mjs fails when instrumentation-http, instrumentation-express
// or express changes.

import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  context,
  isSpanContextValid,
  propagation,
  trace,
} from '@opentelemetry/api';

import { recordHttpRequest } from './metrics.mjs';
import { scrubQuery, scrubText } from './scrub.mjs';
import { isUntracedPath } from './tracing-filters.mjs';

const _METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);
// Operational endpoints are logged at debug level: scrapes and probes would drown real traffic.
const _QUIET_ROUTES = new Set(['/health', '/ready', '/metrics']);
export const UNMATCHED_ROUTE = '<unmatched>';

/**
 * @param {{ logger: import('pino').Logger, accessLog: 'sampled' | 'all', scheme?: string }} options
 * @returns {import('express').RequestHandler}
 */
export function requestTelemetry({ logger, accessLog, scheme = 'http' }) {
  const tracer = trace.getTracer('signalbox-api');
  // The headers the configured propagators read (traceparent, tracestate, baggage, sentry-trace):
  // without any of them there is nothing to continue, and extraction is skipped.
  const propagationHeaders = propagation.fields().map((field) => field.toLowerCase());

  return function requestTelemetryMiddleware(req, res, next) {
    const started = process.hrtime.bigint();
    const method = _METHODS.has(req.method) ? req.method : '_OTHER';
    let span;
    let active = context.active();
    if (!isUntracedPath(req.url)) {
      const parent = _hasAny(req.headers, propagationHeaders)
        ? propagation.extract(ROOT_CONTEXT, req.headers)
        : ROOT_CONTEXT;
      // No attributes at start: the samplers decide on the trace id alone, and an unsampled span
      // would throw them away.
      span = tracer.startSpan(method === '_OTHER' ? 'HTTP' : method, { kind: SpanKind.SERVER }, parent);
      active = trace.setSpan(parent, span);
    }

    // 'close' fires once per response; `on` spares the once-wrapper of every request.
    res.on('close', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      // A client that hung up before the response finished: nginx's 499.
      const status = res.writableFinished ? res.statusCode : 499;
      const route = req.route ? `${req.baseUrl}${String(req.route.path)}` : UNMATCHED_ROUTE;
      const spanContext = span?.spanContext();
      if (span?.isRecording()) {
        _describe(span, req, res, { method, route, scheme });
      }
      recordHttpRequest(method, route, `${Math.floor(status / 100)}xx`, seconds, spanContext);
      if (_accessLogged(accessLog, spanContext, status)) {
        // The access line's fields and levels both services share (examples/contract.yaml).
        const fields = {
          http_method: method,
          http_route: route,
          http_status: status,
          duration_ms: Math.round(seconds * 1000),
          path: scrubText(req.originalUrl.split('?', 1)[0]).slice(0, 256),
        };
        // In the request's context, so the line carries its trace and span id. A 5xx is the
        // service's own failure: at error level, so a level filter finds every failed request.
        context.with(active, () => {
          if (status >= 500) {
            logger.error(fields, 'request');
          } else if (_QUIET_ROUTES.has(route)) {
            logger.debug(fields, 'request');
          } else {
            logger.info(fields, 'request');
          }
        });
      }
      span?.end();
    });

    if (span) {
      context.with(active, next);
    } else {
      next();
    }
  };
}

function _hasAny(headers, names) {
  for (const name of names) {
    if (headers[name] !== undefined) {
      return true;
    }
  }
  return false;
}

// The stable HTTP server semantic conventions, for recorded spans only. PII in attributes is
// scrubbed by the exporter (otel.mjs); the query string here already, parameter by parameter on its
// decoded text (the exporter's free-text rules would miss `alice%40example.com`).
function _describe(span, req, res, { method, route, scheme }) {
  const { url } = req;
  const queryAt = url.indexOf('?');
  const host = _hostAndPort(req.headers.host);
  const attributes = {
    'http.request.method': method,
    'url.scheme': scheme,
    'url.path': queryAt === -1 ? url : url.slice(0, queryAt),
    'network.protocol.version': req.httpVersion,
    'network.peer.address': req.socket?.remoteAddress,
    'network.peer.port': req.socket?.remotePort,
    'client.address': req.socket?.remoteAddress,
    'user_agent.original': req.headers['user-agent'],
  };
  if (method === '_OTHER') {
    attributes['http.request.method_original'] = req.method;
  }
  if (queryAt !== -1) {
    attributes['url.query'] = scrubQuery(url.slice(queryAt + 1));
  }
  if (host) {
    attributes['server.address'] = host.address;
    if (host.port !== undefined) {
      attributes['server.port'] = host.port;
    }
  }
  if (res.headersSent) {
    attributes['http.response.status_code'] = res.statusCode;
  }
  if (route !== UNMATCHED_ROUTE) {
    attributes['http.route'] = route;
    span.updateName(`${method === '_OTHER' ? 'HTTP' : method} ${route}`);
  }
  if (res.statusCode >= 500 && res.headersSent) {
    // An exception recorded on the span (errorResponse) already named its type.
    attributes['error.type'] = res.locals?.errorType ?? String(res.statusCode);
    span.setStatus({ code: SpanStatusCode.ERROR });
  } else if (!res.writableFinished) {
    attributes['error.type'] = 'client_closed';
  }
  span.setAttributes(attributes);
}

// `host`, `host:port`, `[v6]`, `[v6]:port`; undefined when absent.
function _hostAndPort(header) {
  if (!header) {
    return undefined;
  }
  const match = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(header);
  if (!match) {
    return { address: header };
  }
  return { address: match[1].replace(/^\[|\]$/g, ''), port: match[2] === undefined ? undefined : Number(match[2]) };
}

// With `sampled`, a line whose trace was not kept would lead nowhere in Tempo and costs as much
// as the request itself; errors are always worth a line. A request that was never traced
// (health checks, no tracing at all) had no sampling decision, so it is logged.
function _accessLogged(accessLog, spanContext, status) {
  if (accessLog === 'all' || status >= 500 || !spanContext || !isSpanContextValid(spanContext)) {
    return true;
  }
  return (spanContext.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED;
}
