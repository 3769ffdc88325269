"""Errors: sentry-sdk, linked to the current OpenTelemetry span by its ``OTLPIntegration``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sentry_sdk
from opentelemetry import trace
from sentry_sdk.integrations.logging import BreadcrumbHandler, LoggingIntegration
from sentry_sdk.integrations.modules import ModulesIntegration
from sentry_sdk.integrations.otlp import OTLPIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST, EventScrubber
from sentry_sdk.utils import event_from_exception

if TYPE_CHECKING:
    from contextvars import Token

    from sentry_sdk.types import Event as SentryEvent
    from sentry_sdk.types import Hint

from app.scrub import scrub_text, scrub_traceback
from app.settings import Settings
from app.telemetry.logs import NotFrom
from app.telemetry.metrics import DroppedTelemetry
from app.telemetry.sentry_events import (
    add_request_context,
    add_source_context,
    attach_user,
    current_request,
    exception_names,
    scrub_event,
)
from app.telemetry.sentry_transport import counting_transport
from app.telemetry.tracebacks import format_traceback, qualified_name

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
    token = current_request.set(scope)
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
    current_request.reset(token)


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
            "exception.type": qualified_name(type(error)),
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


def setup_sentry(settings: Settings, dropped: DroppedTelemetry) -> bool:
    if not settings.sentry_dsn:
        return False
    ignored = frozenset(settings.sentry_ignore_errors)

    def before_send(event: SentryEvent, hint: Hint) -> SentryEvent | None:
        exc_info = hint.get("exc_info")
        if exc_info and exception_names(exc_info[0]) & ignored:
            return None
        attach_user(event)
        tags = event.setdefault("tags", {})
        tags["service"] = settings.otel_service_name
        trace_id = event.get("contexts", {}).get("trace", {}).get("trace_id")
        if trace_id:
            tags["trace_id"] = str(trace_id)
        scrubbed: SentryEvent = scrub_event(event)
        return scrubbed

    global _event_budget, _sentry_active
    rate = settings.sentry_max_events_per_second
    _event_budget = _EventBudget(rate) if rate > 0 else None
    transport = counting_transport(dropped)
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.sentry_environment,
        release=settings.version,
        sample_rate=settings.sentry_sample_rate,
        # OpenTelemetry is the tracer (see the module docstring); Sentry's own tracing would
        # start a second trace with another id. Sentry still receives performance data, as the
        # same OTLP spans (SENTRY_TRACES_SAMPLE_RATE, see setup_tracing).
        traces_sample_rate=None,
        profile_session_sample_rate=settings.sentry_profiles_sample_rate or None,
        profile_lifecycle="manual",
        send_default_pii=False,
        # Telemetry.shutdown flushes Sentry with the other backends, within one deadline; the
        # SDK's exit hook would wait up to this long again for a Sentry that does not answer.
        shutdown_timeout=0,
        include_local_variables=settings.sentry_include_local_variables,
        # Source lines are added for the app's own frames only (add_source_context): the SDK
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
        transport=transport,
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
    breadcrumbs.addFilter(NotFrom("app.access", "sentry_sdk", "opentelemetry", "urllib3"))
    logging.getLogger().addHandler(breadcrumbs)
    _sentry_active = sentry_sdk.get_client().is_active()
    sentry_sdk.get_global_scope().add_event_processor(add_request_context)
    sentry_sdk.get_global_scope().add_event_processor(add_source_context)
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
