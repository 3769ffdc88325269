"""What a Sentry event carries beyond the exception: the request being served, the user id,
source lines of the app's own frames; and its scrubbing, values as well as keys."""

from __future__ import annotations

import linecache
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import sentry_sdk
from sentry_sdk.utils import handle_in_app

if TYPE_CHECKING:
    from sentry_sdk.types import Event as SentryEvent
    from sentry_sdk.types import Hint

from app.scrub import FILTERED, scrub_value

current_request: ContextVar[Mapping[str, Any] | None] = ContextVar(
    "signalbox_request", default=None
)


_USER_ID_HEADER = "x-user-id"
_SOURCE_CONTEXT_LINES = 5


def add_source_context(event: SentryEvent, hint: Hint) -> SentryEvent:
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


def add_request_context(event: SentryEvent, hint: Hint) -> SentryEvent:
    """The request being served when the event was captured: method, URL, query and headers,
    and the route template as the transaction name (groups events by endpoint)."""
    scope = current_request.get()
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


def attach_user(event: SentryEvent) -> None:
    """The caller's user id (``X-User-Id`` header), never IP, email or name: the request
    context Sentry's integration already attached is read here, at no per-request cost."""
    headers = event.get("request", {}).get("headers")
    if not isinstance(headers, Mapping):
        return
    user_id = next((v for k, v in headers.items() if str(k).lower() == _USER_ID_HEADER), None)
    if user_id and user_id != FILTERED:
        event["user"] = {"id": str(user_id)[:128]}


def exception_names(exc_type: type[BaseException]) -> set[str]:
    return {exc_type.__name__, f"{exc_type.__module__}.{exc_type.__qualname__}"}


def scrub_event(event: Any) -> Any:
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
        return scrub_event(value)
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
        {**frame, "vars": scrub_event(frame["vars"])} if "vars" in frame else frame
        for frame in stacktrace.get("frames") or []
    ]
    return {**stacktrace, "frames": frames}
