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
"""

from __future__ import annotations

import collections
import contextlib
import linecache
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import sentry_sdk
from opentelemetry import propagate, trace
from opentelemetry._logs import LogRecord as APILogRecord
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import get_current
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.metrics import Counter, MeterProvider, NoOpCounter, NoOpMeter, NoOpMeterProvider
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import CarrierT, Getter, default_getter
from opentelemetry.sdk._logs import LogRecordLimits, ReadableLogRecord
from opentelemetry.sdk._logs._internal import _RESERVED_ATTRS, std_to_otel
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from pythonjsonlogger.json import JsonFormatter
from sentry_sdk.consts import EndpointType
from sentry_sdk.integrations.logging import BreadcrumbHandler, LoggingIntegration
from sentry_sdk.integrations.modules import ModulesIntegration
from sentry_sdk.integrations.otlp import OTLPIntegration, SentryOTLPPropagator
from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST, EventScrubber
from sentry_sdk.tracing_utils import extract_sentrytrace_data
from sentry_sdk.transport import HttpTransport
from sentry_sdk.utils import Dsn, event_from_exception, handle_in_app

from app import otlp
from app.outage import Outage
from app.scrub import FILTERED, is_sensitive_key, scrub_text, scrub_traceback, scrub_value
from app.settings import Settings

if TYPE_CHECKING:
    from contextvars import Token
    from types import TracebackType

    from opentelemetry.context import Context
    from sentry_sdk.envelope import Envelope, Item
    from sentry_sdk.types import Event as SentryEvent
    from sentry_sdk.types import Hint

_log = logging.getLogger("app.telemetry")

# Why a service without a traces endpoint serves no exemplars, in its start-up line (the same
# words as the Node service's: examples/contract.yaml).
EXEMPLARS_OFF = "exemplars off: no traces endpoint (set OTEL_EXPORTER_OTLP_ENDPOINT)"

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
    # OTLP logs' batch processor (flushed and shut down with the rest), None when off.
    log_processor: BatchLogRecordProcessor | None
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
        dropped = _DroppedTelemetry()
        registry.register(dropped)
        self_metrics = dropped.meter_provider

        with _sdk_drop_counts():
            log_processor = _setup_logging(settings, resource, self_metrics, dropped)
            sentry_on = _setup_sentry(settings, dropped)
            tracer_provider = _setup_tracing(settings, resource, dropped, sentry_on)
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


@contextlib.contextmanager
def _sdk_drop_counts() -> Iterator[None]:
    """The SDK reads its self-metrics switch when a processor, exporter or tracer is created.
    On for the processors and exporters made here, whose drop counts telemetry_dropped_total
    reports; off again for the tracers made later, whose per-span counters (started, live)
    were ~20% of starting an unsampled span, for a NoOp meter that reads nothing."""
    before = os.environ.get(_SDK_SELF_METRICS)
    os.environ[_SDK_SELF_METRICS] = "true"
    try:
        yield
    finally:
        if before is None:
            del os.environ[_SDK_SELF_METRICS]
        else:
            os.environ[_SDK_SELF_METRICS] = before


_current_request: ContextVar[Mapping[str, Any] | None] = ContextVar(
    "signalbox_request", default=None
)


# What enter_request changed, for leave_request to undo.
_Entered = tuple["Token[Mapping[str, Any] | None]", "sentry_sdk.Scope | None"]


def enter_request(scope: Mapping[str, Any]) -> _Entered:
    """Called as a request starts: keeps its ASGI scope for the request context of Sentry
    events, and gives it a Sentry isolation scope of its own, so breadcrumbs and tags set while
    serving it never appear in another request's events. Nothing is built unless an event is
    sent. Undo with ``leave_request``.

    Only the isolation scope is forked, not also Sentry's "current" scope as
    ``sentry_sdk.isolation_scope()`` does (twice the cost on every request): the current
    scope holds Sentry's own spans, and OpenTelemetry is the tracer here; ``app.observe``
    forks it (``new_scope``) where an event gets extra context.
    """
    token = _current_request.set(scope)
    if not _sentry_active:
        return token, None
    outer = sentry_sdk.get_isolation_scope()
    isolated = outer.fork()
    isolated.clear_breadcrumbs()  # start-up and background logs are not this request's story
    sentry_sdk.Scope.set_isolation_scope(isolated)
    return token, outer


def leave_request(entered: _Entered) -> None:
    token, outer = entered
    if outer is not None:
        sentry_sdk.Scope.set_isolation_scope(outer)
    _current_request.reset(token)


_sentry_active = False


def report_unhandled(error: BaseException) -> tuple[str, str | None]:
    """Record an exception that escaped a request handler on the current span and send it to
    Sentry, marked unhandled, as Sentry's own integrations do.

    Returns the formatted traceback, for the request's log line (formatting it is most of
    what an error costs, so it is done once for the span, stdout and OTLP logs), and the
    Sentry event's id, or None when no event was sent.
    """
    stacktrace = scrub_traceback(format_traceback(error))
    span = trace.get_current_span()
    # What Span.record_exception records, with the traceback formatted once.
    span.add_event(
        "exception",
        {
            "exception.type": _qualified_name(type(error)),
            "exception.message": scrub_text(str(error)),
            "exception.stacktrace": stacktrace,
            "exception.escaped": "False",
        },
    )
    span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
    event_id = None
    if sentry_event_allowed():
        event, hint = event_from_exception(
            error,
            client_options=sentry_sdk.get_client().options,
            mechanism={"type": "asgi", "handled": False},
        )
        event_id = sentry_sdk.capture_event(event, hint=hint)
    return stacktrace, event_id


def sentry_event_allowed() -> bool:
    """Whether an error may be sent to Sentry now: Sentry is on and the process is within
    SENTRY_MAX_EVENTS_PER_SECOND. Asked before the event is built, which is most of its
    cost. A refused event is counted, and reported to Sentry as discarded for backpressure
    (its client reports), so the issue's stats show the loss."""
    client = sentry_sdk.get_client()
    if not client.is_active():
        return False
    if _event_budget is None or _event_budget.take():
        return True
    if client.transport is not None:
        client.transport.record_lost_event("backpressure", data_category="error")
    return False


class _EventBudget:
    """A token bucket: ``rate`` events a second on average, bursts of one second's worth
    (at least one event)."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            elapsed, self._updated = now - self._updated, now
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


_event_budget: _EventBudget | None = None


_CAUSE_NOTE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT_NOTE = "\nDuring handling of the above exception, another exception occurred:\n\n"


def format_traceback(error: BaseException) -> str:
    """``traceback.format_exception`` without Python 3.11's ``^^^^`` column markers.

    Finding a marker's columns walks the positions of the frame's whole code object; through
    the framework's large functions that was ~1 ms of CPU per error, two thirds of formatting
    it. Source lines come from linecache without re-checking each file on disk (a stat per
    file per traceback). Chained causes and contexts are printed as Python prints them.
    """
    chain: list[tuple[BaseException, str]] = []  # (exception, note printed after it)
    seen: set[int] = set()
    current: BaseException | None = error
    note = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, note))
        if current.__cause__ is not None:
            current, note = current.__cause__, _CAUSE_NOTE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, note = current.__context__, _CONTEXT_NOTE
        else:
            current = None
    parts: list[str] = []
    for exception, after in reversed(chain):
        if exception.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            _format_frames(exception.__traceback__, parts)
        parts.extend(traceback.format_exception_only(type(exception), exception))
        parts.append(after)
    return "".join(parts)


# Consecutive identical frames (recursion) printed before "[Previous line repeated N more
# times]", as traceback.StackSummary.format does.
_RECURSIVE_CUTOFF = 3


def _format_frames(tb: TracebackType, parts: list[str]) -> None:
    """``StackSummary.format`` without a FrameSummary object per frame (a third of the cost)."""
    last: tuple[str, int | None, str] | None = None
    count = 0
    for frame, lineno in traceback.walk_tb(tb):
        code = frame.f_code
        where = (code.co_filename, lineno, code.co_name)
        if where != last:
            if count > _RECURSIVE_CUTOFF:
                parts.append(_repeated(count - _RECURSIVE_CUTOFF))
            last, count = where, 0
        count += 1
        if count > _RECURSIVE_CUTOFF:
            continue
        parts.append(f'  File "{where[0]}", line {lineno}, in {where[2]}\n')
        source = linecache.getline(where[0], lineno).strip() if lineno is not None else ""
        if source:
            parts.append(f"    {source}\n")
    if count > _RECURSIVE_CUTOFF:
        parts.append(_repeated(count - _RECURSIVE_CUTOFF))


def _repeated(count: int) -> str:
    return f"  [Previous line repeated {count} more time{'s' if count > 1 else ''}]\n"


def _qualified_name(cls: type) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside a valid span."""
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


# --- traces -------------------------------------------------------------------------------


def _setup_tracing(
    settings: Settings, resource: Resource, dropped: _DroppedTelemetry, sentry_on: bool
) -> TracerProvider:
    # The sampler comes from the standard OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG
    # (default: parent-based, always on). Spans are created even when no exporter is
    # configured, so that logs, errors and exemplars still share a trace id.
    # The SDK's self-metrics are read for what the processors and exporters drop; its
    # per-span counters (started, live) would cost every request and are read by nothing.
    provider = TracerProvider(resource=resource, meter_provider=NoOpMeterProvider())
    self_metrics = dropped.meter_provider
    if settings.otel_exporter_otlp_traces_endpoint is not None:
        # Instrumentations set URL, query and header attributes at various points of a
        # span's life; the exporter masks PII in the final values, on its own thread.
        exporter = otlp.SpanExporter(
            endpoint=str(settings.otel_exporter_otlp_traces_endpoint),
            timeout=settings.otel_exporter_otlp_timeout / 1000,  # ms -> the SDK's seconds
            meter_provider=self_metrics,
            scrub=scrub_value,
            outage=dropped.outage("traces", "traces"),
        )
        provider.add_span_processor(
            _BatchSpanProcessor(
                exporter,
                max_queue_size=settings.otel_bsp_max_queue_size,
                max_export_batch_size=min(512, settings.otel_bsp_max_queue_size),
                meter_provider=self_metrics,
            )
        )
    if sentry_on and settings.sentry_dsn and settings.sentry_traces_sample_rate > 0:
        provider.add_span_processor(
            _TraceRatioFilter(
                _BatchSpanProcessor(
                    _sentry_otlp_exporter(settings, dropped),
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
            [_SentryTracePropagator(), TraceContextTextMapPropagator(), W3CBaggagePropagator()]
        )
    )
    return provider


class _SentryTracePropagator(SentryOTLPPropagator):
    """Sentry's propagator, with two fixes (sentry-sdk 2.75):

    - it raises TypeError on a ``sentry-trace`` header without a span id (``-``, ``1``, a lone
      trace id): every route would answer 500, before the app's middleware could count or log
      it. Such a header is ignored, as the W3C propagator ignores a bad traceparent;
    - it continues every trace as sampled ("leave the sampling to Sentry"), so a caller's
      ``...-0`` (not sampled) was exported all the same. The caller's decision is kept, as for
      traceparent's flags.
    """

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        try:
            extracted = super().extract(carrier, context, getter)
        except (TypeError, ValueError):
            return context if context is not None else get_current()
        header = getter.get(carrier, "sentry-trace")
        parsed = extract_sentrytrace_data(header[0]) if header else None
        remote = trace.get_current_span(extracted).get_span_context()
        if not (parsed and parsed["parent_sampled"] is False and remote.is_valid):
            return extracted
        unsampled = SpanContext(remote.trace_id, remote.span_id, is_remote=True)
        return trace.set_span_in_context(NonRecordingSpan(unsampled), extracted)


def _sentry_otlp_exporter(settings: Settings, dropped: _DroppedTelemetry) -> otlp.SpanExporter:
    """Sentry ingests OTLP traces itself: the same spans, with the same ids, as in Tempo."""
    assert settings.sentry_dsn is not None
    auth = Dsn(settings.sentry_dsn).to_auth(f"sentry.python/{sentry_sdk.VERSION}")
    return otlp.SpanExporter(
        endpoint=auth.get_api_url(EndpointType.OTLP_TRACES),
        headers={"X-Sentry-Auth": auth.to_header()},
        timeout=settings.otel_exporter_otlp_timeout / 1000,  # ms -> the SDK's seconds
        meter_provider=dropped.meter_provider,
        scrub=scrub_value,
        outage=dropped.outage("sentry-traces", "traces"),
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

    global _event_budget, _sentry_active
    rate = settings.sentry_max_events_per_second
    _event_budget = _EventBudget(rate) if rate > 0 else None
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
        # Telemetry.shutdown flushes Sentry with the other backends, within one deadline; the
        # SDK's exit hook would wait up to this long again for a Sentry that does not answer.
        shutdown_timeout=0,
        include_local_variables=settings.sentry_include_local_variables,
        # Source lines are added for the app's own frames only (_add_source_context): the SDK
        # re-reads and splits the whole file of every frame, framework frames included,
        # which was half the CPU of an error (~10 ms).
        include_source_context=False,
        # Integrations are listed, not discovered: auto-enabling would add Starlette's and
        # FastAPI's per-request middleware (see the module docstring) and httpx's header
        # injection, which the composite OpenTelemetry propagator already does.
        auto_enabling_integrations=False,
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
        ],
        disabled_integrations=[
            # The installed-package list (~100 entries) in every event doubled its size and
            # serialisation cost; the release names the build, whose packages are locked.
            ModulesIntegration(),
            # Replaced by the breadcrumb handler below: the integration patches every logging
            # call and matches each record against its ignore list (~10 us a line).
            LoggingIntegration(),
        ],
    )
    # Log records become breadcrumbs; errors are captured explicitly, not from logs, so one
    # failure is one Sentry event. The access line is written after the response, when any
    # event has been sent already: as a breadcrumb it could only ever be thrown away.
    breadcrumbs = BreadcrumbHandler(level=logging.INFO)
    breadcrumbs.addFilter(_NotFrom("app.access", "sentry_sdk", "opentelemetry", "urllib3"))
    logging.getLogger().addHandler(breadcrumbs)
    _sentry_active = sentry_sdk.get_client().is_active()
    sentry_sdk.get_global_scope().add_event_processor(_add_request_context)
    sentry_sdk.get_global_scope().add_event_processor(_add_source_context)
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
_SOURCE_CONTEXT_LINES = 5


def _add_source_context(event: SentryEvent, hint: Hint) -> SentryEvent:
    """Sentry's pre/post source lines, for in-app frames only, from linecache (files are read
    once per process, not once per frame of every event)."""
    # The SDK marks frames in_app only after the event processors; mark them now, by its rule.
    options = sentry_sdk.get_client().options
    handle_in_app(
        event, options["in_app_exclude"], options["in_app_include"], options["project_root"]
    )
    for exception in (event.get("exception") or {}).get("values") or ():
        for frame in (exception.get("stacktrace") or {}).get("frames") or ():
            path, lineno = frame.get("abs_path"), frame.get("lineno")
            if not frame.get("in_app") or not path or not lineno:
                continue
            lines = linecache.getlines(path)
            if not 0 < lineno <= len(lines):
                continue
            index = lineno - 1
            start = max(0, index - _SOURCE_CONTEXT_LINES)
            frame["pre_context"] = [line.rstrip("\r\n") for line in lines[start:index]]
            frame["context_line"] = lines[index].rstrip("\r\n")
            end = index + 1 + _SOURCE_CONTEXT_LINES
            frame["post_context"] = [line.rstrip("\r\n") for line in lines[index + 1 : end]]
    return event


# Client addresses are personal data; Sentry's own integrations drop them too without
# send_default_pii. Credentials in headers are masked by the scrubbers (sensitive keys).
_ADDRESS_HEADERS = frozenset(
    {"x-forwarded-for", "x-real-ip", "forwarded", "cf-connecting-ip", "true-client-ip"}
)


def _add_request_context(event: SentryEvent, hint: Hint) -> SentryEvent:
    """The request being served when the event was captured: method, URL, query and headers,
    and the route template as the transaction name (groups events by endpoint)."""
    scope = _current_request.get()
    if scope is None or "request" in event:
        return event
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        name = raw_name.decode("latin-1").lower()
        value = FILTERED if name in _ADDRESS_HEADERS else raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    server = scope.get("server") or ("localhost", None)
    host = headers.get("host") or (f"{server[0]}:{server[1]}" if server[1] else server[0])
    path = scope.get("root_path", "") + scope.get("path", "")
    event["request"] = {
        "method": scope.get("method"),
        "url": f"{scope.get('scheme', 'http')}://{host}{path}",
        "query_string": scope.get("query_string", b"").decode("latin-1"),
        "headers": headers,
    }
    route = getattr(scope.get("route"), "path", None)
    if route and not event.get("transaction"):
        event["transaction"] = route
        event["transaction_info"] = {"source": "route"}
    return event


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
        return {
            key: value if key == "sdk" else _scrub_event_value(str(key), value)
            for key, value in event.items()
        }
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
    outage = dropped.outage("sentry", "errors")

    class _CountingTransport(HttpTransport):
        # Sentry's default is 30 s; a hanging Sentry should free the worker sooner.
        TIMEOUT = 5

        def on_dropped_event(self, reason: str) -> None:
            # The SDK's hook for an envelope it could not send: "network" (refused, timed
            # out: the error is being handled) or "status_NNN" (Sentry answered an error).
            # A full queue or a rate limit is not Sentry failing.
            if reason == "network":
                error = sys.exception()
                outage.failed(type(getattr(error, "reason", None) or error).__name__)
            elif reason.startswith("status_5"):
                outage.failed(f"HTTP {reason.removeprefix('status_')}")
            super().on_dropped_event(reason)

        def _handle_response(self, response: Any, envelope: Envelope | None) -> None:
            # sentry-sdk 2.75's only place that sees every answer, failed or not.
            super()._handle_response(response, envelope)
            if 200 <= response.status < 300:
                outage.delivered()

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
    settings: Settings,
    resource: Resource,
    self_metrics: MeterProvider,
    dropped: _DroppedTelemetry,
) -> BatchLogRecordProcessor | None:
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    for handler in list(root.handlers):
        root.removeHandler(handler)

    context = _LogContextFilter(settings.otel_service_name)
    stdout = _StdoutHandler(sys.stdout, dropped)
    stdout.setFormatter(_JsonLineFormatter())
    stdout.addFilter(context)
    root.addHandler(stdout)

    # Uvicorn's own handlers would print plain text; let its records reach the JSON handler.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Exporter retries and queue-full warnings would otherwise repeat for every batch.
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    # So would failed deliveries, which app.outage logs once per outage instead: the OTLP
    # exporters log an error for each batch they could not send, urllib3 a warning for each
    # of the Sentry transport's retries.
    logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)
    logging.getLogger("urllib3").setLevel(logging.ERROR)

    if settings.otel_exporter_otlp_logs_endpoint is None:
        return None
    processor = _BatchLogProcessor(
        otlp.LogExporter(
            endpoint=str(settings.otel_exporter_otlp_logs_endpoint),
            timeout=settings.otel_exporter_otlp_timeout / 1000,  # ms -> the SDK's seconds
            meter_provider=self_metrics,
            outage=dropped.outage("logs", "logs"),
        ),
        max_queue_size=settings.otel_blrp_max_queue_size,
        max_export_batch_size=min(512, settings.otel_blrp_max_queue_size),
        meter_provider=self_metrics,
    )
    otlp_handler = _OtlpLogHandler(processor, resource)
    otlp_handler.addFilter(context)
    # The SDK's and exporters' own records must not be shipped through the pipeline they
    # describe: a failing exporter would feed itself.
    otlp_handler.addFilter(_NotFrom("opentelemetry", "sentry_sdk", "urllib3", "httpcore"))
    root.addHandler(otlp_handler)
    return processor


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """JSON lines to stdout, written by a background thread in batches every 20 ms.

    A write per line was a system call per request (~25 us here), and a stdout whose reader
    stalls (a full pipe to a log collector) would block the event loop. Lines wait in a
    bounded buffer instead; when it is full they are dropped and counted
    (``telemetry_dropped_total{signal="logs",reason="stdout_buffer_full"}``). Closing the
    handler (shutdown, interpreter exit) writes what is left and goes on synchronously.
    """

    _INTERVAL_SECONDS = 0.02
    _MAX_LINES = 10_000

    def __init__(self, stream: Any, dropped: _DroppedTelemetry) -> None:
        super().__init__(stream)
        self._dropped = dropped
        self._lines: collections.deque[str] = collections.deque()
        self._write_lock = threading.Lock()
        self._stopped = threading.Event()
        self._writer = threading.Thread(target=self._run, name="stdout-writer", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        if self._stopped.is_set():
            with self._write_lock:
                self._write([line])
        elif len(self._lines) >= self._MAX_LINES:
            self._dropped.add("logs", "stdout_buffer_full")
        else:
            self._lines.append(line)  # deque.append is atomic: no lock on the request path

    def flush(self) -> None:
        with self._write_lock:  # one writer at a time keeps the lines in order
            lines = []
            while self._lines:
                lines.append(self._lines.popleft())
            if lines:
                self._write(lines)

    def close(self) -> None:
        self._stopped.set()
        self._writer.join(1.0)
        self.flush()
        super().close()

    def _run(self) -> None:
        while not self._stopped.wait(self._INTERVAL_SECONDS):
            self.flush()

    def _write(self, lines: list[str]) -> None:
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # stdout closed or broken: nothing to tell anyone
            self._dropped.add("logs", "stdout_error", len(lines))


# `level` as both services write it (examples/contract.yaml): LOG_LEVEL's names, lower case.
_JSON_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}


class _JsonLineFormatter(JsonFormatter):
    """python-json-logger's formatter with its documented ``add_fields`` hook doing less: the
    fields are known (time, level, logger, message, the context the filter added, the call's
    ``extra``), so they are copied directly instead of being discovered and renamed for each
    record (~25 us a line). The time (UTC, milliseconds, as the Node service writes it) is
    formatted once per second, then given its milliseconds."""

    def __init__(self) -> None:
        super().__init__("{message}", style="{")
        self._second = -1
        self._prefix = ""

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        second = int(record.created)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        log_data["time"] = f"{self._prefix}.{int(record.msecs):03d}Z"
        log_data["level"] = _JSON_LEVELS.get(record.levelno) or record.levelname.lower()
        log_data["logger"] = record.name
        log_data["message"] = record.message
        fields = record.__dict__
        for key in fields.keys() - _NOT_JSON_FIELDS:
            log_data[key] = fields[key]
        log_data.update(message_dict)


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
        fields = record.__dict__
        fields.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate
        if record.exc_info and record.exc_info[1] is not None:
            # Formatted (and scrubbed: messages may hold PII) once, here, for both handlers;
            # the JSON formatter prints exc_text when exc_info is unset.
            error = record.exc_info[1]
            record.exc_text = scrub_traceback(format_traceback(error))
            record.exc_text = record.exc_text.rstrip("\n")
            fields["exception.type"] = _qualified_name(type(error))
            fields["exception.message"] = str(error)
            record.exc_info = None
        for key in fields.keys() - _STANDARD_RECORD_KEYS:
            value = fields[key]
            if is_sensitive_key(key) or isinstance(value, str | Mapping | list):
                fields[key] = scrub_value(key, value)
        return True


_STANDARD_RECORD_KEYS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "service",
    "trace_id",
    "span_id",
    "_signalbox_done",
}


# Added to records for the JSON line only: the OTLP record has them as its own fields (trace
# and span id) and resource (service), and Loki keeps those as structured metadata.
_JSON_ONLY_FIELDS = frozenset({"service", "trace_id", "span_id", "_signalbox_done"})
_NOT_ATTRIBUTES = _RESERVED_ATTRS | _JSON_ONLY_FIELDS | {"color_message"}


class _OtlpLogHandler(logging.Handler):
    """Log records to OTLP, each built once, read-only, straight from the ``logging`` record.

    The SDK's LoggingHandler builds an API record, a writable SDK record with checked
    attributes, then a read-only copy for the batch: ~35 us a line, a third of an access
    line's cost (issue #7, bench/). The scope is the logger's name and the trace context the
    current span's, as there; attributes are fewer: no duplicate of the record's own ids, no
    code location for access lines (always the same middleware line), and the traceback
    _LogContextFilter formatted (``exc_text``) instead of a second formatting. The encoder
    (app.otlp) drops an attribute value OTLP cannot carry, as the SDK does.
    """

    def __init__(self, processor: _BatchLogProcessor, resource: Resource) -> None:
        super().__init__()
        self._processor = processor
        self._resource = resource
        self._limits = LogRecordLimits()
        self._scopes: dict[str, InstrumentationScope] = {}  # one per logger, as get_logger

    def emit(self, record: logging.LogRecord) -> None:
        scope = self._scopes.get(record.name)
        if scope is None:
            scope = self._scopes.setdefault(record.name, InstrumentationScope(record.name))
        context = trace.get_current_span().get_span_context()
        self._processor.enqueue(
            ReadableLogRecord(
                APILogRecord(
                    timestamp=int(record.created * 1e9),
                    observed_timestamp=time.time_ns(),
                    trace_id=context.trace_id,
                    span_id=context.span_id,
                    trace_flags=context.trace_flags,
                    severity_text=_OTEL_SEVERITY_TEXT.get(record.levelname, record.levelname),
                    severity_number=std_to_otel(record.levelno),
                    body=record.getMessage(),
                    attributes=self._attributes(record),
                ),
                resource=self._resource,
                instrumentation_scope=scope,
                limits=self._limits,
            )
        )

    @staticmethod
    def _attributes(record: logging.LogRecord) -> dict[str, Any]:
        attributes = {k: v for k, v in record.__dict__.items() if k not in _NOT_ATTRIBUTES}
        if record.name != "app.access":
            attributes["code.file.path"] = record.pathname
            attributes["code.function.name"] = record.funcName
            attributes["code.line.number"] = record.lineno
        if record.exc_text:
            attributes["exception.stacktrace"] = record.exc_text
        return attributes


# https://opentelemetry.io/docs/specs/otel/logs/data-model/#displaying-severity
_OTEL_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}


class _BatchLogProcessor(BatchLogRecordProcessor):
    """The SDK's batching (bounded queue, background export, drops counted), fed records that
    are read-only already: ``on_emit`` would copy each into one. A full queue refuses the new
    record (see _emit_unless_full)."""

    def enqueue(self, record: ReadableLogRecord) -> None:
        _emit_unless_full(self._batch_processor, record)


class _BatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch span processor, except that a full queue refuses the new span (see
    _emit_unless_full)."""

    def on_end(self, span: ReadableSpan) -> None:
        if span.context and span.context.trace_flags.sampled:
            _emit_unless_full(self._batch_processor, span)


def _emit_unless_full(batch: Any, item: Any) -> None:
    """Queues ``item`` in an SDK batch processor, or counts it as dropped (``queue_full``, as
    the SDK does) when the queue is full.

    The SDK's full queue evicts its oldest item for each new one (opentelemetry-sdk 1.45,
    ``BatchProcessor.emit``). While a backend is down, every span and log record then lived
    for a whole queue's turn, long enough for the garbage collector to promote it and scan
    it again and again: its collections took up to 75 ms, stalling requests. Refusing the
    new item, as the Node and Java SDKs do, lets it die young and leaves the queue alone.
    """
    if len(batch._queue) >= batch._max_queue_size:
        batch._metrics.drop_items(1)
        return
    batch.emit(item)


_NOT_JSON_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
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
    of items in failed exports (``meter_provider`` is given to its processors and exporters);
    errors: Sentry events its transport reports as lost, and those over the event budget.
    """

    _SDK_COUNTERS: ClassVar[dict[str, str]] = {
        "otel.sdk.processor.span.processed": "traces",
        "otel.sdk.exporter.span.exported": "traces",
        "otel.sdk.processor.log.processed": "logs",
        "otel.sdk.exporter.log.exported": "logs",
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], float] = {}
        self.meter_provider = _SdkCounts(self._count_sdk)

    def add(self, signal: str, reason: str, amount: float = 1) -> None:
        with self._lock:
            self._counts[(signal, reason)] = self._counts.get((signal, reason), 0) + amount

    def outage(self, backend: str, signal: str) -> Outage:
        """An outage tracker for ``backend``, whose losses are counted under ``signal``."""
        return Outage(backend, lambda: self.by_signal()[signal])

    def by_signal(self) -> dict[str, int]:
        """Items dropped so far, per signal, whatever the reason."""
        counts: dict[str, int] = {}
        for (signal, _), value in self.totals().items():
            counts[signal] = counts.get(signal, 0) + int(value)
        return counts

    def totals(self) -> dict[tuple[str, str], float]:
        totals: dict[tuple[str, str], float] = {
            (signal, reason): 0.0
            for signal in ("traces", "logs", "errors")
            for reason in ("queue_full",)
        }
        with self._lock:
            totals.update(self._counts)
        return totals

    def _count_sdk(self, name: str, attributes: Mapping[str, Any] | None, amount: float) -> None:
        # Only outcomes with an error type are losses; successes are counted with none.
        reason = attributes.get("error.type") if attributes else None
        signal = self._SDK_COUNTERS.get(name)
        if reason and signal:
            self.add(signal, str(reason), amount)

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


class _SdkCounts(NoOpMeterProvider):
    """The SDK self-metrics' counters as plain sums handed to ``count``; its other
    instruments (queue size, export duration) do nothing. The SDK's MeterProvider cost ~15 us
    a count, paid for every item dropped while a backend is down (issue #7, bench/)."""

    def __init__(self, count: Callable[[str, Mapping[str, Any] | None, float], None]) -> None:
        self._count = count

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> _SdkCountsMeter:
        return _SdkCountsMeter(name, self._count)


class _SdkCountsMeter(NoOpMeter):
    def __init__(self, name: str, count: Callable[[str, Mapping[str, Any] | None, float], None]):
        super().__init__(name)
        self._count = count

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Counter:
        return _SdkCounter(name, self._count)


class _SdkCounter(NoOpCounter):
    def __init__(self, name: str, count: Callable[[str, Mapping[str, Any] | None, float], None]):
        super().__init__(name)
        self._metric = name
        self._count = count

    def add(self, amount: float, attributes: Any = None, context: Any = None) -> None:
        self._count(self._metric, attributes, amount)
