// Entry point: `npm start` (node --import ./src/instrument.mjs src/server.mjs).

import * as Sentry from '@sentry/node';

import { createApp } from './app.mjs';
import { loadConfigOrExit } from './config.mjs';
import { createLogger } from './logger.mjs';
import { buildInfo, droppedTotals, exemplarsEnabled } from './metrics.mjs';
import { Monitor } from './monitor.mjs';
import { logOutagesTo } from './outage.mjs';
import { getTelemetry } from './runtime.mjs';

// Telemetry gets this long to flush on shutdown; a backend that is down must not hold the exit.
const _FLUSH_TIMEOUT_MS = 3000;

const telemetry = getTelemetry();
// Started without the preload (plain `node src/server.mjs`): no telemetry, same checks.
const config = telemetry?.config ?? loadConfigOrExit();

const logger = createLogger({
  level: config.logLevel,
  service: config.otel.serviceName,
  version: config.version,
});
if (!telemetry) {
  logger.warn('started without --import ./src/instrument.mjs: no traces, OTLP logs or Sentry');
}
_logStartup(logger);
logOutagesTo(logger);

buildInfo.set({ version: config.version, commit: config.commit, service: config.otel.serviceName }, 1);

const monitor = new Monitor(config.monitor, logger);
let ready = true;
const app = createApp({
  service: {
    name: config.otel.serviceName,
    version: config.version,
    commit: config.commit,
    environment: config.sentry.environment,
  },
  logger,
  monitor,
  isReady: () => ready,
  accessLog: config.accessLog,
});

const server = app.listen(config.port, config.host, (error) => {
  if (error) {
    // A port in use or a bad HOST: one line naming the variable, as for any bad setting.
    process.stderr.write(`api: ${_listenProblem(error)}\n`);
    process.exit(2);
  }
  const address = server.address();
  logger.info(
    {
      host: address.address,
      port: address.port,
      targets: config.monitor.targets.map((target) => target.name),
      interval_ms: config.monitor.intervalMs,
    },
    'listening',
  );
  monitor.start();
});
// Longer than typical load-balancer idle timeouts, so the proxy closes idle connections first.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.requestTimeout = 30_000;
server.on('error', (error) => {
  logger.fatal({ err: error }, 'cannot listen');
  process.exit(1);
});

let stopping = false;
async function shutdown(signal) {
  if (stopping) {
    return;
  }
  stopping = true;
  ready = false;
  logger.info({ signal }, 'shutting down');
  const closed = new Promise((resolve) => server.close(resolve));
  server.closeIdleConnections();
  await monitor.stop();
  await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, _FLUSH_TIMEOUT_MS).unref())]);
  // Every backend in parallel, each within _FLUSH_TIMEOUT_MS: name -> whether it finished.
  const [otel, sentry] = await Promise.all([
    telemetry?.otel.shutdown(_FLUSH_TIMEOUT_MS),
    // Sentry.close resolves false when the events could not all be sent in time.
    telemetry && config.sentry.dsn ? Sentry.close(_FLUSH_TIMEOUT_MS) : undefined,
  ]);
  const finished = { ...otel, ...(sentry === undefined ? {} : { sentry }) };
  const names = Object.keys(finished);
  logger.info(
    {
      signal,
      flushed: names.filter((name) => finished[name]),
      not_flushed: names.filter((name) => !finished[name]),
      dropped: droppedTotals(),
    },
    'stopped',
  );
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

// Which telemetry is on, in one line, the same as the FastAPI service's (examples/contract.yaml):
// `telemetry ready: on=metrics off=sentry,...` and, when no exemplars are served, why.
function _logStartup(log) {
  const sentry = Boolean(telemetry && config.sentry.dsn);
  const summary = {
    sentry,
    sentry_performance: sentry && config.sentry.tracesSampleRate > 0,
    traces: Boolean(telemetry && config.otel.tracesEndpoint),
    logs: Boolean(telemetry && config.otel.logsEndpoint),
    metrics: true,
    // An exemplar links a metric to a trace: only worth serving when traces are exported.
    exemplars: exemplarsEnabled(),
  };
  const names = (on) => Object.keys(summary).filter((name) => summary[name] === on).join(',') || '-';
  const why = summary.exemplars ? '' : '; exemplars off: no traces endpoint (set OTEL_EXPORTER_OTLP_ENDPOINT)';
  log.info({ telemetry: summary }, `telemetry ready: on=${names(true)} off=${names(false)}${why}`);
}

// What is wrong with where the server was asked to listen, named by the variable that sets it.
function _listenProblem(error) {
  const where = `[${config.host}]:${config.port}`;
  switch (error.code) {
    case 'EADDRINUSE':
      return `PORT: ${config.port} is already in use (${where}); stop the other server or set PORT`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `HOST: '${config.host}' is neither an address nor a name that resolves here`;
    case 'EADDRNOTAVAIL':
      return `HOST: '${config.host}' is not an address of this machine`;
    case 'EACCES':
      return `PORT: ${config.port} needs privileges this process does not have`;
    default:
      return `HOST/PORT: cannot listen on ${where}: ${error.message}`;
  }
}
