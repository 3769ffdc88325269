// The Node service's /inventory/:sku (same catalogue, validation and answers as examples/api and
// bench/bare_express.mjs), with an access line per request (pino) and the RED metrics
// (prom-client), written as those libraries' READMEs show. Telemetry set-up: instrument.mjs.
//
// Run: PORT=9091 node --import ./instrument.mjs server.cjs

const Sentry = require('@sentry/node');
const express = require('express');
const pino = require('pino');
const client = require('prom-client');

const logger = pino();

client.collectDefaultMetrics();
const labelNames = ['method', 'route', 'status_code'];
const requests = new client.Counter({ name: 'http_requests_total', help: 'HTTP requests', labelNames });
const duration = new client.Histogram({
  name: 'http_request_duration_seconds',
  help: 'HTTP request duration in seconds',
  labelNames,
});

const CATALOG = new Map([
  ['SB-1001', { name: 'Signal lamp', in_stock: 12 }],
  ['SB-1002', { name: 'Relay interlock', in_stock: 3 }],
  ['SB-1003', { name: 'Point motor', in_stock: 0 }],
  ['SB-1004', { name: 'Track circuit', in_stock: 7 }],
  ['SB-1005', { name: 'Lever frame', in_stock: 1 }],
]);
const SKU = /^[A-Za-z0-9-]{1,32}$/;

const app = express();
app.disable('x-powered-by');
app.set('etag', false);

app.use((req, res, next) => {
  const stop = duration.startTimer();
  res.on('finish', () => {
    const labels = {
      method: req.method,
      route: req.route ? req.baseUrl + req.route.path : 'unmatched',
      status_code: String(res.statusCode),
    };
    requests.inc(labels);
    const seconds = stop(labels);
    logger.info({ ...labels, path: req.path, duration_ms: seconds * 1000 }, 'request completed');
  });
  next();
});

app.get('/ready', (_req, res) => {
  res.json({ status: 'ready' });
});

app.get('/metrics', async (_req, res) => {
  res.set('Content-Type', client.register.contentType);
  res.end(await client.register.metrics());
});

app.get('/inventory/:sku', (req, res) => {
  const { sku } = req.params;
  if (!SKU.test(sku)) {
    res.status(400).json({ error: 'invalid_sku', message: 'sku must be 1 to 32 letters, digits or dashes' });
    return;
  }
  const item = CATALOG.get(sku);
  if (!item) {
    res.status(404).json({ error: 'not_found', sku });
    return;
  }
  res.json({ sku, ...item });
});

app.get('/error', () => {
  throw new Error('deliberate error from /error');
});

app.use((req, res) => {
  res.status(404).json({ error: 'not_found' });
});

Sentry.setupExpressErrorHandler(app);

app.use((error, _req, res, _next) => {
  logger.error({ err: error }, 'unhandled error');
  res.status(500).json({ error: 'internal_error' });
});

const server = app.listen(Number(process.env.PORT ?? 9091), '127.0.0.1');
server.keepAliveTimeout = 65_000;
