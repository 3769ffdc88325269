// JSON logs on stdout. The pino instrumentation (instrument.mjs) adds trace_id/span_id from the
// active span and forwards each line to the OTel Logs API, so Loki gets the same scrubbed record.

import pino from 'pino';

import { countDropped } from './metrics.mjs';
import { scrubText, scrubValue } from './scrub.mjs';

// pino's own destination (sonic-boom), with its documented options bounding it: by default it
// writes each line asynchronously and, when stdout's reader stalls (a full pipe to a log
// collector), keeps every line in memory until the process runs out of it. Here lines wait until
// 8 KiB are buffered or 100 ms have passed, then go out in one write; a stalled reader fills the
// bounded buffer, and lines beyond it are dropped and counted
// (telemetry_dropped_total{signal="logs",reason="stdout_buffer_full"}), as in the FastAPI service.
// pino writes what is left synchronously on exit. This is for that behaviour, not for speed:
// measured on 2026-12-04, a line costs the same CPU either way (about 6.5 us, pipe to a reader).
export const STDOUT_BUFFER = Object.freeze({ minLength: 8192, periodicFlush: 100, maxLength: 4 * 1024 * 1024 });

/**
 * @param {{ level: string, service: string, version: string }} options
 * @param {import('pino').DestinationStream} [destination] defaults to stdout (stdoutStream)
 */
export function createLogger({ level, service, version }, destination = stdoutStream()) {
  return pino(
    {
      level,
      base: { service, version },
      // The field names both services write (examples/contract.yaml): `time` (ISO 8601, UTC),
      // `level`, `message`, `service`.
      messageKey: 'message',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        // Every field, at any depth: values under sensitive keys (password, token, authorization,
        // cookie, ...) are replaced whole, free text (emails, card numbers, key=value secrets) is
        // masked. pino's `redact` is not used: it covered a subset of these keys and cost more
        // than the rest of a line's formatting.
        log: (record) => scrubValue('', record),
      },
      hooks: {
        logMethod(args, method) {
          method.apply(
            this,
            args.map((arg) => (typeof arg === 'string' ? scrubText(arg) : arg)),
          );
        },
      },
      serializers: {
        // The standard serializer's result has its own prototype; copy it to scrub it.
        err: (error) => scrubValue('', { ...pino.stdSerializers.err(error) }),
      },
    },
    destination,
  );
}

/** pino's own stdout stream (sonic-boom), buffered and bounded as STDOUT_BUFFER says. */
export function stdoutStream({ fd = 1, ...options } = {}) {
  const stream = pino.destination({ dest: fd, ...STDOUT_BUFFER, ...options });
  stream.on('drop', () => countDropped('logs', 1, 'stdout_buffer_full'));
  return stream;
}
