"""Helpers for application code: report errors with context, leave breadcrumbs, time work.

They work whether or not Sentry is configured (without a DSN the Sentry calls do nothing) and
always keep the error in the current trace.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, ParamSpec, TypeVar, overload

import sentry_sdk
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from app.telemetry import sentry_event_allowed

P = ParamSpec("P")
R = TypeVar("R")
Level = Literal["fatal", "error", "warning", "info", "debug"]

_tracer = trace.get_tracer("app")
_log = logging.getLogger("app")


def capture_exception(error: BaseException, **context: Any) -> str | None:
    """Send ``error`` to Sentry with ``context`` attached and record it on the current span.

    Returns the Sentry event id (None when Sentry is off, the event was filtered, or the
    process is over SENTRY_MAX_EVENTS_PER_SECOND).
    """
    span = trace.get_current_span()
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    if not sentry_event_allowed():
        return None
    with sentry_sdk.new_scope() as scope:
        if context:
            scope.set_context("details", context)
        return sentry_sdk.capture_exception(error)


def capture_message(message: str, level: Level = "info", **context: Any) -> str | None:
    if not sentry_event_allowed():
        return None
    with sentry_sdk.new_scope() as scope:
        if context:
            scope.set_context("details", context)
        return sentry_sdk.capture_message(message, level=level)


def add_breadcrumb(message: str, category: str = "app", **data: Any) -> None:
    """A step leading to a possible error; shown in the Sentry event if one follows."""
    sentry_sdk.add_breadcrumb(category=category, message=message, data=data or None)


@overload
def monitored(
    func: Callable[P, Awaitable[R]], *, name: str | None = None
) -> Callable[P, Awaitable[R]]: ...
@overload
def monitored(func: Callable[P, R], *, name: str | None = None) -> Callable[P, R]: ...
def monitored(func: Callable[P, Any], *, name: str | None = None) -> Callable[P, Any]:
    """Run ``func`` in its own span and log how long it took (sync or async)."""
    span_name = name or func.__qualname__

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            started = time.perf_counter()
            with _tracer.start_as_current_span(span_name):
                try:
                    return await func(*args, **kwargs)
                finally:
                    _log_timing(span_name, started)

        return run_async

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> Any:
        started = time.perf_counter()
        with _tracer.start_as_current_span(span_name):
            try:
                return func(*args, **kwargs)
            finally:
                _log_timing(span_name, started)

    return run


def capture_errors(
    *, reraise: bool = True
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R | None]]]:
    """For background coroutines: run in a span of their own, report an exception to Sentry
    (in that span's trace), then re-raise or swallow it.

    Use ``reraise=False`` for fire-and-forget tasks, whose exceptions nobody would see.
    """

    def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | None]]:
        task = func.__qualname__

        @functools.wraps(func)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R | None:
            with _tracer.start_as_current_span(f"task {task}", record_exception=False):
                try:
                    return await func(*args, **kwargs)
                except Exception as error:
                    _log.exception("background task %s failed", task)
                    capture_exception(error, task=task)
                    if reraise:
                        raise
                    return None

        return run

    return decorate


def _log_timing(name: str, started: float) -> None:
    elapsed_ms = (time.perf_counter() - started) * 1000
    _log.debug(
        "%s took %.1fms", name, elapsed_ms, extra={"operation": name, "duration_ms": elapsed_ms}
    )
