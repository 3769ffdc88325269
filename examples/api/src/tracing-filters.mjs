// Which HTTP requests are left out of traces.

// Health checks and scrapes arrive every few seconds and would bury real traffic in Tempo.
const _UNTRACED_PATHS = new Set(['/health', '/ready', '/metrics']);

/** True for a request target (`/path?query`) that gets no span. */
export function isUntracedPath(url) {
  const queryAt = url.indexOf('?');
  return _UNTRACED_PATHS.has(queryAt === -1 ? url : url.slice(0, queryAt));
}

/**
 * HttpInstrumentation ignoreOutgoingRequestHook: telemetry's own deliveries (Sentry envelopes,
 * OTLP exports) must never be traced, or every export would produce spans to export.
 * @param {ReturnType<import('./config.mjs').loadConfig>} config
 */
export function ignoredOutgoingRequest(config) {
  const endpoints = [];
  if (config.sentry.dsn) {
    const dsn = new URL(config.sentry.dsn);
    const segments = dsn.pathname.split('/').filter(Boolean);
    const projectId = segments.pop();
    const base = segments.length > 0 ? `/${segments.join('/')}` : '';
    endpoints.push(_endpoint(dsn, `${base}/api/${projectId}/`));
  }
  for (const url of [config.otel.tracesEndpoint, config.otel.logsEndpoint]) {
    if (url) {
      const parsed = new URL(url);
      endpoints.push(_endpoint(parsed, parsed.pathname));
    }
  }
  return (options) => {
    const host = _bare(options.hostname ?? options.host ?? '');
    const port = String(options.port || _defaultPort(options.protocol));
    const path = options.path ?? '/';
    return endpoints.some(
      (endpoint) => endpoint.host === host && endpoint.port === port && path.startsWith(endpoint.path),
    );
  };
}

function _endpoint(url, path) {
  return { host: _bare(url.hostname), port: url.port || _defaultPort(url.protocol), path };
}

function _bare(host) {
  // URL keeps IPv6 hosts in brackets; request options do not.
  return host.replace(/^\[|\]$/g, '').toLowerCase();
}

function _defaultPort(protocol) {
  return protocol === 'https:' ? '443' : '80';
}
