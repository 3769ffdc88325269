"""Everything the service records about one HTTP request, in one pure ASGI middleware: the
server span, the RED metrics with exemplars, the access log line and unhandled errors.

One middleware, because each of these is cheap alone and expensive when spread over layers:
the generic ASGI instrumentations cost 150-400 us a request on the benchmark machine even for
requests whose trace is not sampled (issue #7, bench/). Here an unsampled request costs a
propagation lookup and a non-recording span; attributes are only computed for spans that are
recorded. Metric labels come from the matched route TEMPLATE, never the raw path, so random
URLs cannot create new series.

A custom piece, kept because ``make bench`` shows it is worth it: it starts the service with
the server span made by opentelemetry-instrumentation-fastapi instead (bench/stock_fastapi.py,
``server-span``; this middleware then only counts, times and logs). On 2026-12-04 a 100%-traced
``/hello`` cost 1,325k instructions (callgrind) with this middleware's span and 2,235k with the
instrumentation's: 41% of the request saved, over the 10% a custom piece must save
(bench/results.md has the latest figure). tests/test_pins.py fails when FastAPI, whose own
instrumentation app/main.py turns off, changes version.

Span attributes follow the stable HTTP server conventions:
https://opentelemetry.io/docs/specs/semconv/http/http-spans/#http-server-span
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import Counter, Gauge, Histogram

from app.telemetry import (
    UNTRACED_ROUTES,
    current_trace_id,
    enter_request,
    leave_request,
    report_unhandled,
)

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Span, TracerProvider
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "http_server_requests",
    "HTTP requests served, by method, route template and status class.",
    ["method", "route", "status_class"],
)
DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Time to serve an HTTP request, by method, route template and status class.",
    ["method", "route", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BUILD_INFO = Gauge(
    "app_build_info",
    "Always 1; the labels say which build is running.",
    ["version", "commit", "service"],
)

UNMATCHED_ROUTE = "<unmatched>"
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNTRACED = frozenset(UNTRACED_ROUTES)
# Polled by infrastructure: counted, but not logged per request.
_QUIET_ROUTES = frozenset({"/health", "/ready", "/metrics"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_access_log = logging.getLogger("app.access")


class RequestTelemetryMiddleware:
    """Traces, counts, times and logs each request, and reports an unhandled exception to
    Sentry inside the request's span, so the span, exemplar, log line and Sentry event share
    its trace id. An unhandled exception is answered with a JSON 500.

    ``access_log="sampled"`` writes the line only for requests whose trace is sampled and for
    every 5xx: at a 10% trace sample rate, logs cost a tenth, and every line kept has its
    trace in Tempo. ``"all"`` writes one line per request.

    ``exemplars`` is whether spans are exported: without that, an exemplar would name a trace
    that exists nowhere.
    """

    def __init__(
        self,
        app: ASGIApp,
        tracer_provider: TracerProvider | None = None,
        access_log: Literal["sampled", "all"] = "sampled",
        exemplars: bool = True,
    ) -> None:
        self.app = app
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._log_every_request = access_log == "all"
        self._exemplars = exemplars
        # Only the headers the configured propagators read are decoded for each request.
        self._propagation_headers = frozenset(
            name.encode("latin-1") for name in propagate.get_global_textmap().fields
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in _KNOWN_METHODS else "_OTHER"
        span, token = self._start_span(scope, method)
        status = 0

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        error: Exception | None = None
        stacktrace: str | None = None
        entered = enter_request(scope)
        try:
            await self.app(scope, receive, send_with_status)
        except Exception as exc:
            error = exc
            stacktrace, event_id = report_unhandled(exc)
            if status:  # the response had begun: nothing sane to send; let it close
                raise
            # Answer here instead of letting the exception reach the server, which would log
            # it again without a trace id and drop the keep-alive connection. The shape of
            # every error answer (examples/contract.yaml).
            status = 500
            body = {
                "error": "internal_error",
                "message": "internal server error",
                "trace_id": current_trace_id(),
            }
            if event_id:
                body["sentry_event_id"] = event_id
            await _send_json(send, 500, body)
        finally:
            try:
                self._finish(scope, span, method, status or 500, started, error, stacktrace)
            finally:
                leave_request(entered)
                if token is not None:
                    otel_context.detach(token)

    def _start_span(self, scope: Scope, method: str) -> tuple[Span, Token[Context] | None]:
        if scope["path"] in _UNTRACED:
            return trace.INVALID_SPAN, None
        carrier: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name in self._propagation_headers:
                key = name.decode("latin-1")
                text = value.decode("latin-1")
                carrier[key] = f"{carrier[key]},{text}" if key in carrier else text
        parent = propagate.extract(carrier) if carrier else otel_context.Context()
        # No attributes at start: they are only worth computing if the span is recorded.
        # The configured samplers (parent-based, trace-id ratio) decide on the trace id alone.
        span = self._tracer.start_span(
            method if method != "_OTHER" else "HTTP", parent, SpanKind.SERVER
        )
        return span, otel_context.attach(trace.set_span_in_context(span, parent))

    def _finish(
        self,
        scope: Scope,
        span: Span,
        method: str,
        status: int,
        started: float,
        error: Exception | None,
        stacktrace: str | None,
    ) -> None:
        seconds = time.perf_counter() - started
        route = getattr(scope.get("route"), "path", None)
        template = route or UNMATCHED_ROUTE
        if span.is_recording():
            _describe(span, scope, method, route, status, error)
        series = _series(method, template, f"{status // 100}xx")
        context = span.get_span_context()
        sampled = context.is_valid and context.trace_flags.sampled
        # Exemplars only on failed requests whose trace is exported: the collector's tail
        # sampling keeps every trace with an error, so each exemplar opens a trace that exists
        # (a plain request's trace is kept only by chance).
        failed = self._exemplars and sampled and status >= 500
        exemplar = {"trace_id": f"{context.trace_id:032x}"} if failed else None
        series[0].inc(exemplar=exemplar)
        series[1].observe(seconds, exemplar=exemplar)
        if template not in _QUIET_ROUTES and (sampled or status >= 500 or self._log_every_request):
            # Logged inside the span, so the line (and its traceback) has the trace id.
            _log_access(method, template, status, seconds, error, stacktrace)
        span.end()


# (method, route template, status class) -> its counter and histogram children. Bounded like
# the labels themselves (known methods x routes x status classes); a dict lookup instead of
# two ``labels()`` calls, which validate and lock on every request.
_SERIES: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def _series(method: str, template: str, status_class: str) -> tuple[Any, Any]:
    key = (method, template, status_class)
    series = _SERIES.get(key)
    if series is None:
        series = _SERIES[key] = (REQUESTS.labels(*key), DURATION.labels(*key))
    return series


def _log_access(
    method: str,
    template: str,
    status: int,
    seconds: float,
    error: Exception | None,
    stacktrace: str | None,
) -> None:
    level = logging.ERROR if status >= 500 else logging.INFO
    if not _access_log.isEnabledFor(level):
        return
    fields: dict[str, Any] = {
        "http_method": method,
        "http_route": template,
        "http_status": status,
        "duration_ms": round(seconds * 1000, 2),
    }
    if error is not None:
        fields["exception.type"] = f"{type(error).__module__}.{type(error).__qualname__}"
        fields["exception.message"] = str(error)
    # makeRecord, not log(): the caller's location is always this line, not worth looking up
    # on every request.
    record = _access_log.makeRecord(
        _access_log.name,
        level,
        __file__,
        0,
        "%s %s %d %.1fms",
        (method, template, status, seconds * 1000),
        None,
        "access",
        fields,
    )
    # The traceback report_unhandled formatted: both log handlers read exc_text.
    record.exc_text = stacktrace.rstrip("\n") if stacktrace else None
    _access_log.handle(record)


def _describe(
    span: Span,
    scope: Scope,
    method: str,
    route: str | None,
    status: int,
    error: Exception | None,
) -> None:
    """The server span's name and attributes. Values may hold PII (query strings); the span
    exporter scrubs them off the request path (app.otlp)."""
    scheme = scope.get("scheme", "http")
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.scheme": scheme,
        "url.path": scope["path"],
        "http.response.status_code": status,
    }
    if method == "_OTHER":
        attributes["http.request.method_original"] = scope["method"]
    if scope.get("query_string"):
        attributes["url.query"] = scope["query_string"].decode("latin-1")
    if scope.get("http_version"):
        attributes["network.protocol.version"] = scope["http_version"]
    host = None
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1")
        elif name == b"user-agent":
            attributes["user_agent.original"] = value.decode("latin-1")
    address, port = _server_address(host, scope, scheme)
    if address:
        attributes["server.address"] = address
        if port is not None:
            attributes["server.port"] = port
    if route is not None:
        attributes["http.route"] = route
        span.update_name(f"{'HTTP' if method == '_OTHER' else method} {route}")
    if error is not None or status >= 500:
        attributes["error.type"] = type(error).__qualname__ if error is not None else str(status)
        span.set_status(StatusCode.ERROR)
    span.set_attributes(attributes)


def _server_address(host: str | None, scope: Scope, scheme: str) -> tuple[str | None, int | None]:
    """From the Host header (what the client asked for), else the listening socket."""
    if host:
        name, colon, port = host.rpartition(":")
        if colon and port.isdigit() and (not name.startswith("[") or name.endswith("]")):
            return name.strip("[]") or None, int(port)
        return host.strip("[]"), _DEFAULT_PORTS.get(scheme)
    server = scope.get("server")
    return (server[0], server[1]) if server else (None, None)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
