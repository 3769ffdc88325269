// A telemetry backend's outage, logged once as it starts and once as it ends (the same lines as
// the FastAPI service's app/outage.py).
//
// While a backend is down every batch and every event fails: a line per failure would put a line
// per request on stdout and in Loki. Each lost item is counted in telemetry_dropped_total; the log
// says when delivery stopped, why, and how much was lost by the time it came back.

import { ROOT_CONTEXT, context } from '@opentelemetry/api';

import { droppedTotals } from './metrics.mjs';

let _logger;

/** Where outage lines go. Set by server.mjs: the senders start (instrument.mjs) before its logger. */
export function logOutagesTo(logger) {
  _logger = logger;
}

/** Told the outcome of each delivery to one backend, whose losses count under `signal`. */
export class Outage {
  constructor(backend, signal) {
    this._backend = backend;
    this._signal = signal;
    this._since = undefined;
    this._droppedBefore = 0;
  }

  failed(reason) {
    // Before server.mjs has a logger nothing is noted: the next failure starts the outage.
    if (this._since !== undefined || _logger === undefined) {
      return;
    }
    this._since = new Date();
    const since = this._since.toISOString().replace(/\.\d+Z$/, 'Z');
    _log('warn', { backend: this._backend, reason }, `${this._backend}: delivery failing since ${since} (${reason})`);
  }

  delivered() {
    // What the signal's count grew by since the last delivery is what the outage cost.
    const dropped = droppedTotals()[this._signal];
    const lost = dropped - this._droppedBefore;
    this._droppedBefore = dropped;
    if (this._since === undefined) {
      return;
    }
    const seconds = Math.round((Date.now() - this._since.getTime()) / 100) / 10;
    this._since = undefined;
    _log(
      'info',
      { backend: this._backend, dropped: lost, outage_seconds: seconds },
      `${this._backend}: delivery recovered after ${lost} dropped`,
    );
  }
}

// Outside any request's trace: a delivery's callback may run in the context of the request whose
// telemetry it carried, and the outage is not that request's story.
function _log(level, fields, message) {
  context.with(ROOT_CONTEXT, () => _logger[level](fields, message));
}

/**
 * A failed delivery as a bounded metric label (telemetry_dropped_total's `reason`): `http_503`,
 * `ECONNREFUSED`, or the error's type; never its message, which could be anything.
 */
export function failureKind(error) {
  if (typeof error?.code === 'number') {
    return `http_${error.code}`;
  }
  return (typeof error?.code === 'string' && error.code) || error?.name || 'unknown';
}

/** A short reason for a failed delivery: `HTTP 503`, `ECONNREFUSED`, or the error's message. */
export function failureReason(error) {
  if (typeof error?.code === 'number') {
    return `HTTP ${error.code}`;
  }
  return error?.code ?? error?.message ?? 'unknown error';
}
