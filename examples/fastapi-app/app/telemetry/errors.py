"""Errors: sentry-sdk, linked to the current OpenTelemetry span by its ``OTLPIntegration``."""

from __future__ import annotations

import linecache
import logging
import sys
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import sentry_sdk
from opentelemetry import trace
from sentry_sdk.integrations.logging import BreadcrumbHandler, LoggingIntegration
from sentry_sdk.integrations.modules import ModulesIntegration
from sentry_sdk.integrations.otlp import OTLPIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST, EventScrubber
from sentry_sdk.transport import HttpTransport
from sentry_sdk.utils import event_from_exception, handle_in_app

if TYPE_CHECKING:
    from contextvars import Token

    from sentry_sdk.envelope import Envelope, Item
    from sentry_sdk.types import Event as SentryEvent
    from sentry_sdk.types import Hint

from app.scrub import FILTERED, scrub_text, scrub_traceback, scrub_value
from app.settings import Settings
from app.telemetry.logs import NotFrom
from app.telemetry.metrics import DroppedTelemetry
from app.telemetry.tracebacks import format_traceback, qualified_name

_SENTRY_ERROR_CATEGORIES = frozenset({"error", "default"})


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
        # same OTLP spans (SENTRY_TRACES_SAMPLE_RATE, see setup_tracing).
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
    breadcrumbs.addFilter(NotFrom("app.access", "sentry_sdk", "opentelemetry", "urllib3"))
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


def _counting_transport(dropped: DroppedTelemetry) -> type[HttpTransport]:
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
