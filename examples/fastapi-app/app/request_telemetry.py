"""RED metrics for every HTTP request, with exemplars linking each series to a trace.

A pure ASGI middleware (no per-request Starlette objects) keeps the cost to a few
microseconds. Labels come from the matched route TEMPLATE, never the raw path, so random URLs
cannot create new series.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from app.telemetry import current_trace_id, report_unhandled

if TYPE_CHECKING:
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
# Polled by infrastructure: counted, but not logged per request.
_QUIET_ROUTES = frozenset({"/health", "/ready", "/metrics"})
_access_log = logging.getLogger("app.access")


class RequestTelemetryMiddleware:
    """Counts and times each request, writes one access log line for it and reports an
    unhandled exception to Sentry.

    It runs inside the OpenTelemetry server span, so the exemplar, the log line and the Sentry
    event carry the request's trace id. Unhandled exceptions are counted as 500 and re-raised.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        error: Exception | None = None
        try:
            await self.app(scope, receive, send_with_status)
        except Exception as exc:
            error = exc
            report_unhandled(exc)
            if status:  # the response had begun: nothing sane to send, let the server close it
                raise
            # Answer here instead of letting the exception reach the server, which would log it
            # again without a trace id and drop the client's keep-alive connection.
            status = 500
            await _send_json(
                send, 500, {"error": "internal server error", "trace_id": current_trace_id()}
            )
        finally:
            self._record(scope, status or 500, time.perf_counter() - started, error)

    @staticmethod
    def _record(scope: Scope, status: int, seconds: float, error: Exception | None) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED_ROUTE
        # "_OTHER" as in OpenTelemetry's semantic conventions, and in the Node service.
        method = scope["method"] if scope["method"] in _KNOWN_METHODS else "_OTHER"
        status_class = f"{status // 100}xx"
        context = trace.get_current_span().get_span_context()
        exemplar = (
            {"trace_id": f"{context.trace_id:032x}"}
            if context.is_valid and context.trace_flags.sampled
            else None
        )
        REQUESTS.labels(method, template, status_class).inc(exemplar=exemplar)
        DURATION.labels(method, template, status_class).observe(seconds, exemplar=exemplar)
        if template not in _QUIET_ROUTES:
            level = logging.ERROR if status >= 500 else logging.INFO
            _access_log.log(
                level,
                "%s %s %d %.1fms",
                method,
                template,
                status,
                seconds * 1000,
                # Logged here, inside the server span, so the traceback carries the trace id.
                exc_info=error,
                extra={
                    "http_method": method,
                    "http_route": template,
                    "http_status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )


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
