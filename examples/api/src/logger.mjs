// JSON logs on stdout. The pino instrumentation (instrument.mjs) adds trace_id/span_id from the
// active span and forwards each line to the OTel Logs API, so Loki gets the same scrubbed record.

import pino from 'pino';

import { FILTERED, scrubText, scrubValue } from './scrub.mjs';

// Known places for secrets, removed before anything else looks at the record.
const _REDACT = [
  'password',
  'token',
  'authorization',
  'cookie',
  '*.password',
  '*.token',
  '*.authorization',
  '*.cookie',
  'headers.authorization',
  'headers.cookie',
  '*.headers.authorization',
  '*.headers.cookie',
];

/**
 * @param {{ level: string, service: string, version: string }} options
 * @param {import('pino').DestinationStream} [destination] defaults to stdout
 */
export function createLogger({ level, service, version }, destination) {
  return pino(
    {
      level,
      base: { service, version },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        // Everything else (emails, card numbers, key=value secrets in free text) by value.
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
      redact: { paths: _REDACT, censor: FILTERED },
    },
    destination,
  );
}
