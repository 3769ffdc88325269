"""The FastAPI service with one or more of its custom pieces swapped for the library's own way.

Issue #21's rule: a hand-made piece of telemetry code stays only where ``make bench`` shows it
saves at least 10% of an instrumented request's cost. ``make bench`` measures each piece named
in ``PIECES`` by starting the service through this module with that piece swapped back, and
compares instructions per request (callgrind) with the service as it is.

Run: ``python -m bench.stock_fastapi <key>[,<key>...]`` in examples/fastapi-app, with the
service's environment; anything else is ``python -m app``. The swaps are made here, before the
service starts, so the service itself carries no switch for them.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Piece:
    """A custom piece of a sample service that ``make bench`` weighs (also the Node service's,
    listed in bench/stock-node/pieces.json)."""

    key: str
    piece: str  # the custom piece, where it lives
    stock: str  # what replaces it: the library's documented way
    paths: str  # what it is weighed on, 100% traced: "hot", the hot path; "mix", the /error mix


PIECES = (
    Piece(
        "otlp-encoder",
        "app/otlp.py: protobuf written directly, attribute pairs cached",
        "the SDK exporters' encoder (encode_spans / encode_logs)",
        "hot",
    ),
    Piece(
        "otlp-log-handler",
        "app/telemetry/otlp_logs.py: log records built once, read-only",
        "the SDK's LoggingHandler on a LoggerProvider",
        "hot",
    ),
    Piece(
        "server-span",
        "app/request_telemetry.py: the server span made by the app's own ASGI middleware",
        "opentelemetry-instrumentation-fastapi's server span (its send/receive spans off)",
        "hot",
    ),
    Piece(
        "tracebacks",
        "app/telemetry/tracebacks.py: tracebacks without column markers",
        "traceback.format_exception",
        "mix",
    ),
)


def _sdk_encoder() -> None:
    """app.otlp's exporters encode with the SDK's own encoder. (They still do their own
    outage accounting; attribute values are not scrubbed here, which only makes this variant
    cheaper, so the saving is, if anything, understated.)"""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from app import otlp

    class _SdkEncoder:
        def __init__(self, scrub: Any = None) -> None:
            pass

        def spans(self, spans: Sequence[Any]) -> bytes:
            return bytes(encode_spans(spans).SerializeToString())

        def logs(self, records: Sequence[Any]) -> bytes:
            return bytes(encode_logs(records).SerializeToString())

    otlp._Encoder = _SdkEncoder  # type: ignore[assignment,misc]


def _sdk_log_handler() -> None:
    """Log records reach OTLP through the SDK's LoggingHandler, as its docs show."""
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler

    from app.telemetry import logs

    def _handler(processor: Any, resource: Any) -> logging.Handler:
        provider = LoggerProvider(resource=resource)
        provider.add_log_record_processor(processor)
        return LoggingHandler(logger_provider=provider)

    logs.OtlpLogHandler = _handler  # type: ignore[assignment,misc]


class _NotEnded:
    """The instrumentation's server span, lent to the app's middleware: the instrumentation
    ends it, after the middleware has recorded the request."""

    def __init__(self, span: Any) -> None:
        self._span = span

    def __getattr__(self, name: str) -> Any:
        return getattr(self._span, name)

    def end(self, end_time: int | None = None) -> None:
        pass


def _instrumented_server_span() -> None:
    """The server span from opentelemetry-instrumentation-fastapi, set up as its docs show
    (``FastAPIInstrumentor.instrument_app``); the app's middleware still counts, times and
    logs the request and reports its error, on that span, but no longer makes or describes
    it."""
    from opentelemetry import trace
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    from app import main, request_telemetry

    def _current_span(self: Any, scope: Any, method: str) -> tuple[Any, None]:
        return _NotEnded(trace.get_current_span()), None

    request_telemetry.RequestTelemetryMiddleware._start_span = _current_span  # type: ignore[method-assign,assignment]
    request_telemetry._describe = lambda *args: None
    create_app = main.create_app

    def _instrumented(settings: Any, telemetry: Any) -> Any:
        app = create_app(settings, telemetry)
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=telemetry.tracer_provider,
            excluded_urls="/health,/ready,/metrics",
            exclude_spans=["receive", "send"],
        )
        return app

    main.create_app = _instrumented


def _stdlib_tracebacks() -> None:
    """Tracebacks formatted by the standard library."""
    from app.telemetry import errors, logs

    def _format(error: BaseException) -> str:
        return "".join(traceback.format_exception(error))

    errors.format_traceback = _format
    logs.format_traceback = _format


_SWAPS: dict[str, Callable[[], None]] = {
    "otlp-encoder": _sdk_encoder,
    "otlp-log-handler": _sdk_log_handler,
    "server-span": _instrumented_server_span,
    "tracebacks": _stdlib_tracebacks,
}
assert set(_SWAPS) == {p.key for p in PIECES}


def main(argv: Sequence[str]) -> int:
    keys = [k for k in (argv[0].split(",") if argv else []) if k]
    unknown = [k for k in keys if k not in _SWAPS]
    if not keys or unknown:
        print(
            f"usage: python -m bench.stock_fastapi <key>[,<key>...]; keys: {', '.join(_SWAPS)}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else ""),
            file=sys.stderr,
        )
        return 2
    for key in keys:
        _SWAPS[key]()
    from app.__main__ import main as serve

    return serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
