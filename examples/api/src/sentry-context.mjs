// What Sentry adds to each error event about the runtime and the code: cheaper versions of its
// default Context and ContextLines integrations, which would otherwise be a large part of what a
// captured error costs.
//
// Kept for its cost on a failed request, measured on 2026-12-04 against the stock variant
// (bench/stock-node/sentry-context.mjs: Sentry's default Context and ContextLines), every trace
// sampled and exported, every error sent to Sentry, Node 24.22:
// - instructions (callgrind, whole process, one keep-alive connection, after 8,000 warm-up
//   requests, two windows of 1,000) of a mix of nine GET /inventory/SB-1001 to one GET /error:
//   911,000 a request here, 1,011,000 stock, so about 3.9 million against 4.9 million per /error;
// - CPU (user + system, GET /error only, 6,000 requests, 3 alternating rounds, medians): 873 us an
//   /error here, 1,013 us stock.
// It saves 14-20% of what a failed request costs (5-10% of the 10% error mix). `make bench`
// measures it again. test/pins.test.mjs fails when @sentry/node changes.

import * as Sentry from '@sentry/node';

/** The integrations that replace Sentry's default Context and ContextLines. */
export function eventContextIntegrations() {
  return [..._cheapContext(), _inAppContextLinesIntegration()];
}

// The default Context integration refreshes the app's memory figures for every event with
// process.memoryUsage() (walks every heap space) and process.availableMemory() (reads cgroup
// files): a sixth of the CPU of a captured error. The static contexts stay; the app context
// keeps its start time (memory is on /metrics: process_resident_memory_bytes).
function _cheapContext() {
  const appStartTime = new Date(Date.now() - process.uptime() * 1000).toISOString();
  return [
    Sentry.nodeContextIntegration({ app: false, device: { cpu: true, memory: false } }),
    {
      name: 'AppContext',
      processEvent(event) {
        event.contexts = {
          ...event.contexts,
          app: { app_start_time: appStartTime, ...event.contexts?.app },
        };
        return event;
      },
    },
  ];
}

// Source lines only for the application's own frames (in_app: not node_modules, not node:).
// Sentry's ContextLines has no such option and adds them to every frame; a library's source is
// the same in every event and costs a lookup per frame. Hand-written because the SDK offers no
// frame filter: the integration is given the in-app frames only, then the full list is restored.
function _inAppContextLinesIntegration() {
  const inner = Sentry.contextLinesIntegration();
  return {
    name: 'ContextLines',
    async processEvent(event, hint, client) {
      const restore = [];
      for (const exception of event.exception?.values ?? []) {
        const stacktrace = exception.stacktrace;
        if (Array.isArray(stacktrace?.frames)) {
          restore.push([stacktrace, stacktrace.frames]);
          stacktrace.frames = stacktrace.frames.filter((frame) => frame.in_app !== false);
        }
      }
      try {
        return await inner.processEvent(event, hint, client);
      } finally {
        for (const [stacktrace, frames] of restore) {
          stacktrace.frames = frames;
        }
      }
    },
  };
}
