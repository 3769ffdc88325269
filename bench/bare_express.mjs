// The baseline: the Node service's /inventory/:sku in an Express app with no instrumentation.
//
// Same Node and the same pinned Express as examples/api (loaded from its node_modules, so there is
// no second lock file to keep in step), same settings, validation and JSON answers. No pino, no
// prom-client, no OpenTelemetry, no Sentry: the floor `npm start` is measured against.
//
// Run: PORT=9091 node bench/bare_express.mjs

import { createRequire } from 'node:module';

const require = createRequire(new URL('../examples/api/package.json', import.meta.url));
const express = require('express');

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

app.get('/ready', (_req, res) => {
  res.json({ status: 'ready' });
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

app.use((_error, _req, res, _next) => {
  res.status(500).json({ error: 'internal_error' });
});

const server = app.listen(Number(process.env.PORT ?? 9091), '127.0.0.1');
server.keepAliveTimeout = 65_000;
process.on('SIGTERM', () => server.close(() => process.exit(0)));
