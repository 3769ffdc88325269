// Stock variant of examples/api/src/sentry-requests.mjs (see register.mjs): Sentry's Http and
// Express integrations stay on, as Sentry's Express guide has them (a scope, request data and a
// session for every request), so the error scope below is Sentry's own.

export const REPLACED_REQUEST_INTEGRATIONS = Object.freeze([]);

// Sentry.init's default.
export const RUNTIME_CHANNEL_INJECTION = true;

export function withRequestScope(_req, fn) {
  return fn();
}
