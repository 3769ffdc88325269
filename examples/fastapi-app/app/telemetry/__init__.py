"""Every signal of the service, set up once, before the web framework loads.

One request gets ONE trace id, shared by all four signals:

- traces: OpenTelemetry is the only tracer. The server span is made by
  ``app.request_telemetry``; spans go over OTLP/HTTP to Tempo; W3C ``traceparent`` and Sentry's
  ``sentry-trace`` are both continued on the way in and sent on the way out (composite
  propagator).
- errors: sentry-sdk with its ``OTLPIntegration``, which stamps every event with the current
  OpenTelemetry trace and span id. Unhandled errors are captured by ``app.request_telemetry``
  inside the server span, where that id is set. The integration's ``capture_exceptions``
  stays off: it would send every exception recorded on any span, including the ones the app
  handles and reports with context itself. Sentry's Starlette/FastAPI integrations are not
  used: their per-request middleware, scope and transaction cost ~0.9 ms a request (bench/,
  issue #7), while the same request and user context is added here, only to events sent.
- logs: JSON lines on stdout and, when configured, the same records over OTLP to Loki; both carry
  ``trace_id`` and ``span_id`` of the current span.
- metrics: Prometheus exemplars carry the trace id (see ``app.request_telemetry``).

Every backend is optional: without its endpoint or DSN it is simply off. Every exporter works on
a bounded queue in a background thread; when a backend is down or hangs, data is dropped and
counted in ``telemetry_dropped_total{signal}``, and no request ever waits for it.

Each signal is set up in its own module (tracing, errors, logs, metrics); this one wires them
in order and is the whole surface the rest of the app uses.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sentry_sdk
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry

from app.settings import Settings
from app.telemetry.errors import (
    enter_request,
    leave_request,
    report_unhandled,
    sentry_event_allowed,
    setup_sentry,
)
from app.telemetry.logs import setup_logging
from app.telemetry.metrics import SDK_SELF_METRICS, DroppedTelemetry
from app.telemetry.tracebacks import format_traceback
from app.telemetry.tracing import current_trace_id, setup_tracing

__all__ = [
    "EXEMPLARS_OFF",
    "UNTRACED_ROUTES",
    "Telemetry",
    "current_trace_id",
    "enter_request",
    "format_traceback",
    "leave_request",
    "report_unhandled",
    "sentry_event_allowed",
    "setup",
]

_log = logging.getLogger("app.telemetry")

# Why a service without a traces endpoint serves no exemplars, in its start-up line (the same
# words as the Node service's: examples/contract.yaml).
EXEMPLARS_OFF = "exemplars off: no traces endpoint (set OTEL_EXPORTER_OTLP_ENDPOINT)"

# Routes that are polled by infrastructure: never traced (they would drown real traffic).
UNTRACED_ROUTES = ("/health", "/ready", "/metrics")


@dataclass
class Telemetry:
    """What was switched on, and the handles needed to flush it at shutdown."""

    settings: Settings
    tracer_provider: TracerProvider
    # OTLP logs' batch processor (flushed and shut down with the rest), None when off.
    log_processor: BatchLogRecordProcessor | None
    sentry: bool
    dropped: DroppedTelemetry
    _shut_down: bool = field(default=False, repr=False)

    @property
    def summary(self) -> dict[str, bool]:
        s = self.settings
        return {
            "sentry": self.sentry,
            "sentry_performance": self.sentry and s.sentry_traces_sample_rate > 0,
            "traces": s.otel_exporter_otlp_traces_endpoint is not None,
            "logs": self.log_processor is not None,
            "metrics": True,
            # An exemplar links a metric to a trace: only worth serving when traces are kept.
            "exemplars": s.otel_exporter_otlp_traces_endpoint is not None,
        }

    def shutdown(self, timeout_seconds: float = 3.0) -> None:
        """Flush every backend in parallel for at most ``timeout_seconds`` in all, then log
        one line: what was flushed, what was not by the deadline, what was dropped in all.

        The SDK's own shutdown may wait 30 s per processor for a hanging backend; a deploy's
        stop signal must not. What is not sent by the deadline is lost with the process.
        """
        if self._shut_down:
            return
        self._shut_down = True
        started = time.monotonic()
        summary = self.summary
        flushes: dict[str, Callable[[], object]] = {}
        if summary["traces"] or summary["sentry_performance"]:
            flushes["traces"] = self.tracer_provider.shutdown
        if self.log_processor is not None:
            flushes["logs"] = self.log_processor.shutdown
        if self.sentry:
            flushes["sentry"] = lambda: sentry_sdk.flush(timeout=timeout_seconds)
        threads = {
            name: threading.Thread(target=flush, name=f"flush-{name}", daemon=True)
            for name, flush in flushes.items()
        }
        for thread in threads.values():
            thread.start()
        deadline = started + timeout_seconds
        for thread in threads.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        flushed = [name for name, thread in threads.items() if not thread.is_alive()]
        not_flushed = [name for name, thread in threads.items() if thread.is_alive()]
        dropped = self.dropped.by_signal()
        _log.info(
            "telemetry flushed in %.1f s: %s%s; dropped since start: %s",
            time.monotonic() - started,
            ", ".join(flushed) or "nothing",
            f"; not flushed: {', '.join(not_flushed)}" if not_flushed else "",
            " ".join(f"{signal}={count}" for signal, count in dropped.items()),
            extra={"flushed": flushed, "not_flushed": not_flushed, "dropped": dropped},
        )


_current: Telemetry | None = None
_setup_lock = threading.Lock()


def setup(settings: Settings, registry: CollectorRegistry = REGISTRY) -> Telemetry:
    """Configure every signal once; later calls return the first result unchanged."""
    global _current
    with _setup_lock:
        if _current is not None:
            return _current
        resource = Resource.create(
            {
                "service.name": settings.otel_service_name,
                "service.version": settings.version,
                "deployment.environment": settings.sentry_environment,
                "deployment.environment.name": settings.sentry_environment,
            }
        )
        dropped = DroppedTelemetry()
        registry.register(dropped)
        self_metrics = dropped.meter_provider

        os.environ[SDK_SELF_METRICS] = "true"  # before any processor or exporter is made
        log_processor = setup_logging(settings, resource, self_metrics, dropped)
        sentry_on = setup_sentry(settings, dropped)
        tracer_provider = setup_tracing(settings, resource, dropped, sentry_on)
        HTTPXClientInstrumentor().instrument(tracer_provider=tracer_provider)

        _current = Telemetry(settings, tracer_provider, log_processor, sentry_on, dropped)
        on = [name for name, enabled in _current.summary.items() if enabled]
        off = [name for name, enabled in _current.summary.items() if not enabled]
        _log.info(
            "telemetry ready: on=%s off=%s%s",
            ",".join(on) or "-",
            ",".join(off) or "-",
            "" if _current.summary["exemplars"] else f"; {EXEMPLARS_OFF}",
            extra={"telemetry": _current.summary},
        )
        return _current
