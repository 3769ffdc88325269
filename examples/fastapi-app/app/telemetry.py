"""Every signal of the service, set up once, before the web framework loads.

One request gets ONE trace id, shared by all four signals:

- traces: OpenTelemetry is the only tracer. Spans go over OTLP/HTTP to Tempo; W3C
  ``traceparent`` and Sentry's ``sentry-trace`` are both continued on the way in and sent on the
  way out (composite propagator).
- errors: sentry-sdk with its ``OTLPIntegration``, which stamps every event with the current
  OpenTelemetry trace and span id. Unhandled errors are captured by ``app.metrics`` inside the
  server span, where that id is set (Sentry's ASGI middleware sits outside it and would see
  another id). The integration's ``capture_exceptions`` stays off: it would send
  every exception recorded on any span, including the ones the app handles and reports with
  context itself.
- logs: JSON lines on stdout and, when configured, the same records over OTLP to Loki; both carry
  ``trace_id`` and ``span_id`` of the current span.
- metrics: Prometheus exemplars carry the trace id (see ``app.metrics``).

Every backend is optional: without its endpoint or DSN it is simply off. Every exporter works on
a bounded queue in a background thread; when a backend is down or hangs, data is dropped and
counted in ``telemetry_dropped_total{signal}``, and no request ever waits for it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import sentry_sdk
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import get_current
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import CarrierT, Getter, default_getter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from pythonjsonlogger.json import JsonFormatter
from sentry_sdk.consts import EndpointType
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.httpx import HttpxIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.otlp import OTLPIntegration, SentryOTLPPropagator
from sentry_sdk.integrations.starlette import StarletteIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST, EventScrubber
from sentry_sdk.transport import HttpTransport
from sentry_sdk.utils import Dsn, event_from_exception

from app.scrub import FILTERED, is_sensitive_key, scrub_text, scrub_value
from app.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.context import Context
    from opentelemetry.util.types import Attributes
    from sentry_sdk.envelope import Item
    from sentry_sdk.types import Event as SentryEvent
    from sentry_sdk.types import Hint

_log = logging.getLogger("app.telemetry")

# Routes that are polled by infrastructure: never traced (they would drown real traffic).
UNTRACED_ROUTES = ("/health", "/ready", "/metrics")

# The OpenTelemetry SDK counts its own queue overflows and failed exports when this switch is
# on; telemetry_dropped_total is built from those counts.
_SDK_SELF_METRICS = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"
_SENTRY_ERROR_CATEGORIES = frozenset({"error", "default"})
_EXPORT_TIMEOUT_MS = 30_000


@dataclass
class Telemetry:
    """What was switched on, and the handles needed to flush it at shutdown."""

    settings: Settings
    tracer_provider: TracerProvider
    logger_provider: LoggerProvider | None
    sentry: bool
    dropped: _DroppedTelemetry
    _shut_down: bool = field(default=False, repr=False)

    @property
    def summary(self) -> dict[str, bool]:
        s = self.settings
        return {
            "sentry": self.sentry,
            "sentry_performance": self.sentry and s.sentry_traces_sample_rate > 0,
            "traces": s.otel_exporter_otlp_traces_endpoint is not None,
            "logs": self.logger_provider is not None,
            "metrics": True,
        }

    def shutdown(self, timeout_seconds: float = 3.0) -> None:
        """Flush every backend in parallel for at most ``timeout_seconds`` in all.

        The SDK's own shutdown may wait 30 s per processor for a hanging backend; a deploy's
        stop signal must not. What is not sent by the deadline is lost with the process.
        """
        if self._shut_down:
            return
        self._shut_down = True
        flushes: list[Callable[[], object]] = [self.tracer_provider.shutdown]
        if self.logger_provider is not None:
            flushes.append(self.logger_provider.shutdown)
        if self.sentry:
            flushes.append(lambda: sentry_sdk.flush(timeout=timeout_seconds))
        threads = [threading.Thread(target=flush, daemon=True) for flush in flushes]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + timeout_seconds
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


_current: Telemetry | None = None
_setup_lock = threading.Lock()


def setup(settings: Settings, registry: CollectorRegistry = REGISTRY) -> Telemetry:
    """Configure every signal once; later calls return the first result unchanged."""
    global _current
    with _setup_lock:
        if _current is not None:
            return _current
        os.environ.setdefault(_SDK_SELF_METRICS, "true")
        resource = Resource.create(
            {
                "service.name": settings.otel_service_name,
                "service.version": settings.version,
                "deployment.environment": settings.sentry_environment,
                "deployment.environment.name": settings.sentry_environment,
            }
        )
        dropped = _DroppedTelemetry()
        registry.register(dropped)
        self_metrics = MeterProvider(metric_readers=[dropped.reader], resource=resource)

        logger_provider = _setup_logging(settings, resource, self_metrics)
        sentry_on = _setup_sentry(settings, dropped)
        tracer_provider = _setup_tracing(settings, resource, self_metrics, sentry_on)
        HTTPXClientInstrumentor().instrument(tracer_provider=tracer_provider)

        _current = Telemetry(settings, tracer_provider, logger_provider, sentry_on, dropped)
        on = [name for name, enabled in _current.summary.items() if enabled]
        off = [name for name, enabled in _current.summary.items() if not enabled]
        _log.info(
            "telemetry ready: on=%s off=%s",
            ",".join(on) or "-",
            ",".join(off) or "-",
            extra={"telemetry": _current.summary},
        )
        return _current


def instrument_app(app: FastAPI) -> None:
    """Trace a FastAPI app with the configured provider (call after ``setup``)."""
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=trace.get_tracer_provider(),
        # Patterns are searched in the full URL (scheme and host included), so anchor the end only.
        excluded_urls=",".join(f"{route}$" for route in UNTRACED_ROUTES),
        # Per-message receive/send spans cost ~140 us a request and answer no question an SRE
        # asks; the server span already times the whole request.
        exclude_spans=["receive", "send"],
    )


def report_unhandled(error: BaseException) -> None:
    """Record an exception that escaped a request handler on the current span and send it to
    Sentry, marked unhandled, as Sentry's own integrations do."""
    span = trace.get_current_span()
    span.record_exception(error)
    span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
    client = sentry_sdk.get_client()
    if not client.is_active():
        return
    event, hint = event_from_exception(
        error, client_options=client.options, mechanism={"type": "asgi", "handled": False}
    )
    sentry_sdk.capture_event(event, hint=hint)


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside a valid span."""
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


# --- traces -------------------------------------------------------------------------------


def _setup_tracing(
    settings: Settings, resource: Resource, self_metrics: MeterProvider, sentry_on: bool
) -> TracerProvider:
    # The sampler comes from the standard OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG
    # (default: parent-based, always on). Spans are created even when no exporter is
    # configured, so that logs, errors and exemplars still share a trace id.
    provider = TracerProvider(resource=resource)
    if settings.otel_exporter_otlp_traces_endpoint is not None:
        exporter = _ScrubbingExporter(
            OTLPSpanExporter(
                endpoint=str(settings.otel_exporter_otlp_traces_endpoint),
                timeout=settings.otel_exporter_otlp_timeout,
                meter_provider=self_metrics,
            )
        )
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=settings.otel_bsp_max_queue_size,
                max_export_batch_size=min(512, settings.otel_bsp_max_queue_size),
                meter_provider=self_metrics,
            )
        )
    if sentry_on and settings.sentry_dsn and settings.sentry_traces_sample_rate > 0:
        provider.add_span_processor(
            _TraceRatioFilter(
                BatchSpanProcessor(
                    _ScrubbingExporter(_sentry_otlp_exporter(settings, self_metrics)),
                    max_queue_size=settings.otel_bsp_max_queue_size,
                    max_export_batch_size=min(512, settings.otel_bsp_max_queue_size),
                    meter_provider=self_metrics,
                ),
                settings.sentry_traces_sample_rate,
            )
        )
    trace.set_tracer_provider(provider)
    # W3C last: when a request carries both headers, traceparent is authoritative.
    propagate.set_global_textmap(
        CompositePropagator(
            [_LenientSentryPropagator(), TraceContextTextMapPropagator(), W3CBaggagePropagator()]
        )
    )
    return provider


class _LenientSentryPropagator(SentryOTLPPropagator):
    """sentry-sdk 2.75 raises TypeError on a ``sentry-trace`` header without a span id (``-``,
    ``1``, a lone trace id): every route would answer 500, before the app's middleware could
    count or log it. Such a header is ignored, as the W3C propagator ignores a bad traceparent."""

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        try:
            return super().extract(carrier, context, getter)
        except (TypeError, ValueError):
            return context if context is not None else get_current()


def _sentry_otlp_exporter(settings: Settings, self_metrics: MeterProvider) -> OTLPSpanExporter:
    """Sentry ingests OTLP traces itself: the same spans, with the same ids, as in Tempo."""
    assert settings.sentry_dsn is not None
    auth = Dsn(settings.sentry_dsn).to_auth(f"sentry.python/{sentry_sdk.VERSION}")
    return OTLPSpanExporter(
        endpoint=auth.get_api_url(EndpointType.OTLP_TRACES),
        headers={"X-Sentry-Auth": auth.to_header()},
        timeout=settings.otel_exporter_otlp_timeout,
        meter_provider=self_metrics,
    )


class _TraceRatioFilter(SpanProcessor):
    """Forwards whole traces whose id falls within ``ratio``, like ``TraceIdRatioBased``.

    The decision depends only on the trace id, so every span of a trace, in every service
    using the same rule, is kept or left out together.
    """

    _MASK = (1 << 64) - 1

    def __init__(self, delegate: SpanProcessor, ratio: float) -> None:
        self._delegate = delegate
        self._bound = round(ratio * (1 << 64))

    def _keeps(self, trace_id: int) -> bool:
        return trace_id & self._MASK < self._bound

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and self._keeps(span.context.trace_id):
            self._delegate.on_end(span)

    def shutdown(self) -> None:
        self._delegate.shutdown()

    def force_flush(self, timeout_millis: int = _EXPORT_TIMEOUT_MS) -> bool:
        return self._delegate.force_flush(timeout_millis)


class _ScrubbingExporter(SpanExporter):
    """Masks PII in span and event attributes before the wrapped exporter sends them.

    Instrumentations set URL, query and header attributes at various points of a span's life;
    the export step sees the final attributes, and runs on the exporter's thread, off the
    request path.
    """

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([_scrubbed_span(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = _EXPORT_TIMEOUT_MS) -> bool:
        return self._inner.force_flush(timeout_millis)


def _scrubbed_span(span: ReadableSpan) -> ReadableSpan:
    attributes = _scrubbed_attributes(span.attributes)
    events = [
        Event(event.name, _scrubbed_attributes(event.attributes), event.timestamp)
        for event in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _scrubbed_attributes(attributes: Attributes) -> dict[str, Any]:
    return {key: scrub_value(key, value) for key, value in (attributes or {}).items()}


# --- errors -------------------------------------------------------------------------------


def _setup_sentry(settings: Settings, dropped: _DroppedTelemetry) -> bool:
    if not settings.sentry_dsn:
        return False
    ignored = frozenset(settings.sentry_ignore_errors)

    def before_send(event: SentryEvent, hint: Hint) -> SentryEvent | None:
        exc_info = hint.get("exc_info")
        if exc_info and _exception_names(exc_info[0]) & ignored:
            return None
        _attach_user(event)
        tags = event.setdefault("tags", {})
        tags["service"] = settings.otel_service_name
        trace_id = event.get("contexts", {}).get("trace", {}).get("trace_id")
        if trace_id:
            tags["trace_id"] = str(trace_id)
        scrubbed: SentryEvent = _scrub_event(event)
        return scrubbed

    counting_transport = _counting_transport(dropped)
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.sentry_environment,
        release=settings.version,
        sample_rate=settings.sentry_sample_rate,
        # OpenTelemetry is the tracer (see the module docstring); Sentry's own tracing would
        # start a second trace with another id. Sentry still receives performance data, as the
        # same OTLP spans (SENTRY_TRACES_SAMPLE_RATE, see _setup_tracing).
        traces_sample_rate=None,
        profile_session_sample_rate=settings.sentry_profiles_sample_rate or None,
        profile_lifecycle="manual",
        send_default_pii=False,
        include_local_variables=settings.sentry_include_local_variables,
        event_scrubber=EventScrubber(
            denylist=[*DEFAULT_DENYLIST, *DEFAULT_PII_DENYLIST, *_EXTRA_DENYLIST],
            recursive=True,
        ),
        before_send=before_send,
        # Breadcrumbs leave the process only inside an event, where before_send scrubs them:
        # scrubbing each one as it is recorded would cost every request, error or not.
        transport=counting_transport,
        integrations=[
            OTLPIntegration(
                setup_otlp_traces_exporter=False,
                setup_propagator=False,
                capture_exceptions=False,
            ),
            StarletteIntegration(),
            FastApiIntegration(),
            # Log records become breadcrumbs; errors are captured explicitly, not from logs,
            # so one failure is one Sentry event.
            LoggingIntegration(level=logging.INFO, event_level=None),
        ],
        # The composite OpenTelemetry propagator already adds sentry-trace to outgoing calls.
        disabled_integrations=[HttpxIntegration()],
    )
    if settings.sentry_profiles_sample_rate > 0:
        sentry_sdk.profiler.start_profiler()
    return True


_EXTRA_DENYLIST = (
    "pass",
    "pwd",
    "card",
    "card_number",
    "cardnumber",
    "credit_card",
    "creditcard",
    "cc",
    "cvv",
    "cvc",
    "ssn",
    "social_security_number",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "x-api-key",
)


_USER_ID_HEADER = "x-user-id"


def _attach_user(event: SentryEvent) -> None:
    """The caller's user id (``X-User-Id`` header), never IP, email or name: the request
    context Sentry's integration already attached is read here, at no per-request cost."""
    headers = event.get("request", {}).get("headers")
    if not isinstance(headers, Mapping):
        return
    user_id = next((v for k, v in headers.items() if str(k).lower() == _USER_ID_HEADER), None)
    if user_id and user_id != FILTERED:
        event["user"] = {"id": str(user_id)[:128]}


def _exception_names(exc_type: type[BaseException]) -> set[str]:
    return {exc_type.__name__, f"{exc_type.__module__}.{exc_type.__qualname__}"}


def _scrub_event(event: Any) -> Any:
    """Second pass after EventScrubber: values, not only keys (card numbers in a message)."""
    if isinstance(event, Mapping):
        return {key: _scrub_event_value(str(key), value) for key, value in event.items()}
    return event


# Ids and hashes (trace ids, event ids, debug ids) must survive untouched.
_UNSCRUBBED_KEYS = frozenset(
    {"trace_id", "span_id", "parent_span_id", "event_id", "debug_id", "release"}
)


def _scrub_event_value(key: str, value: Any) -> Any:
    if key in _UNSCRUBBED_KEYS:
        return value
    if key == "stacktrace" and isinstance(value, Mapping):
        return _scrub_stacktrace(value)
    if isinstance(value, Mapping):
        return _scrub_event(value)
    if isinstance(value, list):
        return [_scrub_event_value(key, item) for item in value]
    if isinstance(value, str):
        return scrub_value(key, value)
    return value


def _scrub_stacktrace(stacktrace: Mapping[str, Any]) -> dict[str, Any]:
    """Frames hold source code, which carries no request data; only their local variables
    (when SENTRY_INCLUDE_LOCAL_VARIABLES is on) can. Scrubbing every context line of every
    frame cost ~5 ms per error."""
    frames = [
        {**frame, "vars": _scrub_event(frame["vars"])} if "vars" in frame else frame
        for frame in stacktrace.get("frames") or []
    ]
    return {**stacktrace, "frames": frames}


def _counting_transport(dropped: _DroppedTelemetry) -> type[HttpTransport]:
    class _CountingTransport(HttpTransport):
        # Sentry's default is 30 s; a hanging Sentry should free the worker sooner.
        TIMEOUT = 5

        def record_lost_event(
            self,
            reason: str,
            data_category: Any = None,
            item: Item | None = None,
            *,
            quantity: int = 1,
        ) -> None:
            category = item.data_category if item is not None else data_category
            if category in _SENTRY_ERROR_CATEGORIES:
                dropped.add("errors", reason, 1 if item is not None else quantity)
            super().record_lost_event(reason, data_category, item, quantity=quantity)

    return _CountingTransport


# --- logs ---------------------------------------------------------------------------------


def _setup_logging(
    settings: Settings, resource: Resource, self_metrics: MeterProvider
) -> LoggerProvider | None:
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    for handler in list(root.handlers):
        root.removeHandler(handler)

    context = _LogContextFilter(settings.otel_service_name)
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )
    )
    stdout.addFilter(context)
    root.addHandler(stdout)

    # Uvicorn's own handlers would print plain text; let its records reach the JSON handler.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Exporter retries and queue-full warnings would otherwise repeat for every batch.
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)

    if settings.otel_exporter_otlp_logs_endpoint is None:
        return None
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(
                endpoint=str(settings.otel_exporter_otlp_logs_endpoint),
                timeout=settings.otel_exporter_otlp_timeout,
                meter_provider=self_metrics,
            ),
            max_queue_size=settings.otel_blrp_max_queue_size,
            max_export_batch_size=min(512, settings.otel_blrp_max_queue_size),
            meter_provider=self_metrics,
        )
    )
    otlp = LoggingHandler(logger_provider=provider)
    otlp.addFilter(context)
    # The SDK's and exporters' own records must not be shipped through the pipeline they
    # describe: a failing exporter would feed itself.
    otlp.addFilter(_NotFrom("opentelemetry", "sentry_sdk", "urllib3", "httpcore"))
    root.addHandler(otlp)
    return provider


class _LogContextFilter(logging.Filter):
    """Adds service and trace context to every record and scrubs PII from it, in place.

    It runs on each handler; a record already processed is left as it is.
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_signalbox_done", False):
            return True
        record._signalbox_done = True
        record.service = self._service
        context = trace.get_current_span().get_span_context()
        record.trace_id = f"{context.trace_id:032x}" if context.is_valid else ""
        record.span_id = f"{context.span_id:016x}" if context.is_valid else ""
        record.msg = scrub_text(record.getMessage())
        record.args = None
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_RECORD_KEYS and (
                is_sensitive_key(key) or isinstance(value, str | Mapping | list)
            ):
                record.__dict__[key] = scrub_value(key, value)
        return True


_STANDARD_RECORD_KEYS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "service",
    "trace_id",
    "span_id",
    "_signalbox_done",
}


class _NotFrom(logging.Filter):
    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self._prefixes = tuple(prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(self._prefixes)


# --- dropped telemetry --------------------------------------------------------------------


class _DroppedTelemetry(Collector):
    """``telemetry_dropped_total{signal,reason}``: data lost instead of waited for.

    traces and logs: the OpenTelemetry SDK's own counts of items rejected by a full queue and
    of items in failed exports; errors: Sentry events its transport reports as lost.
    """

    _SDK_COUNTERS: ClassVar[dict[str, str]] = {
        "otel.sdk.processor.span.processed": "traces",
        "otel.sdk.exporter.span.exported": "traces",
        "otel.sdk.processor.log.processed": "logs",
        "otel.sdk.exporter.log.exported": "logs",
    }

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self._lock = threading.Lock()
        self._own: dict[tuple[str, str], float] = {}

    def add(self, signal: str, reason: str, amount: float = 1) -> None:
        with self._lock:
            self._own[(signal, reason)] = self._own.get((signal, reason), 0) + amount

    def totals(self) -> dict[tuple[str, str], float]:
        totals: dict[tuple[str, str], float] = {
            (signal, reason): 0.0
            for signal in ("traces", "logs", "errors")
            for reason in ("queue_full",)
        }
        for name, signal, attributes, value in self._sdk_points():
            reason = attributes.get("error.type")
            if name in self._SDK_COUNTERS and reason:
                key = (signal, str(reason))
                totals[key] = totals.get(key, 0.0) + value
        with self._lock:
            for key, value in self._own.items():
                totals[key] = totals.get(key, 0.0) + value
        return totals

    def _sdk_points(self) -> Iterable[tuple[str, str, Mapping[str, Any], float]]:
        data = self.reader.get_metrics_data()
        if data is None:
            return
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    signal = self._SDK_COUNTERS.get(metric.name)
                    if signal is None:
                        continue
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is not None:
                            yield metric.name, signal, point.attributes or {}, float(value)

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "telemetry_dropped",
            "Telemetry items dropped instead of delaying requests, by signal and reason.",
            labels=["signal", "reason"],
        )
        for (signal, reason), value in sorted(self.totals().items()):
            family.add_metric([signal, reason], value)
        yield family

    def describe(self) -> Iterable[CounterMetricFamily]:
        return []
