// Sentry for errors only: a request gets a Sentry scope when it fails, not when it arrives.
//
// Sentry's Http and Express integrations (on by default) fork a scope, read the headers and record
// a session for every request, and wrap every Express layer, while Sentry is here for errors only
// (spans and propagation belong to OpenTelemetry). They are off (sentry.mjs); instead an error gets
// a scope of its own describing its request when it happens (withRequestScope, app.mjs) and is
// captured by Sentry's expressErrorHandler. Release-health request sessions and breadcrumbs of
// outgoing requests are not recorded.
//
// Kept for its cost, measured on 2026-12-04 against the stock variant
// (bench/stock-node/sentry-requests.mjs: the two integrations on, as Sentry's Express guide has
// them), GET /inventory/SB-1001 with every trace sampled and exported, Node 24.22:
// - instructions (callgrind, whole process, one keep-alive connection, after 8,000 warm-up
//   requests, two windows of 1,000): 581,000 a request here, 748,000 stock;
// - CPU (user + system, 20,000 requests, 3 alternating rounds, medians): 191 us here, 267 us stock.
// It saves a fifth to a quarter of what the request costs with Sentry's defaults. `make bench`
// measures it again: on 2026-12-05, 406k instructions a request here against 615k stock, 34%
// saved (four connections; bench/results.md has the latest figure). test/pins.test.mjs fails when @sentry/node or @sentry/core changes.

import { httpRequestToRequestData } from '@sentry/core';
import * as Sentry from '@sentry/node';

/** Sentry's default integrations this replaces. */
export const REPLACED_REQUEST_INTEGRATIONS = Object.freeze(['Http', 'Express']);

/** Sentry.init's enableRuntimeChannelInjection: its only users were the integrations above, and it
 * hooks every module compile. */
export const RUNTIME_CHANNEL_INJECTION = false;

/**
 * Runs `fn` in a Sentry scope of its own describing `req` (request data for the event, the route
 * as transaction name), so nothing of one request's error leaks into another's.
 * @template T
 * @param {import('express').Request} req
 * @param {() => T} fn
 * @returns {T}
 */
export function withRequestScope(req, fn) {
  return Sentry.withIsolationScope((scope) => {
    scope.setSDKProcessingMetadata({ normalizedRequest: httpRequestToRequestData(req) });
    if (req.route) {
      scope.setTransactionName(`${req.method} ${req.baseUrl}${req.route.path}`);
    }
    return fn();
  });
}
