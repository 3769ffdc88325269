// Stock variant of examples/api/src/sentry-context.mjs (see register.mjs): Sentry's default
// Context and ContextLines integrations, as Sentry.init would add them.

import * as Sentry from '@sentry/node';

export function eventContextIntegrations() {
  return [Sentry.nodeContextIntegration(), Sentry.contextLinesIntegration()];
}
