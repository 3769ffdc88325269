"""The custom telemetry pieces rely on library internals at exact versions: each of these
fails when its library changes, naming what to re-check before the pin is moved."""

from __future__ import annotations

from importlib.metadata import version

import pytest

# (distribution, the version the piece was written and measured against, what to re-check)
_PINS = [
    (
        "fastapi",
        "0.163.2",
        "app/request_telemetry.py: FastAPI's built-in instrumentation must still be off with "
        "telemetry={...} in app/main.py (one server span, not two); re-measure the middleware "
        "against opentelemetry-instrumentation-fastapi (its docstring)",
    ),
    (
        "opentelemetry-exporter-otlp-proto-http",
        "1.45.2",
        "app/otlp.py: the encoder must still produce the SDK's message (tests/test_otlp.py), "
        "the exporter's private _is_request_too_large and retry loop it calls; re-measure it "
        "against the SDK's encoder (its docstring)",
    ),
    (
        "opentelemetry-sdk",
        "1.45.2",
        "app/telemetry/full_queues.py (the batch processor's _batch_processor, _queue, "
        "_max_queue_size, _metrics) and app/telemetry/otlp_logs.py (_RESERVED_ATTRS, "
        "std_to_otel); does a full queue still evict its oldest item, does LoggingHandler "
        "still build three records per line?",
    ),
    (
        "sentry-sdk",
        "2.75.0",
        "app/telemetry/tracing.py _SentryTracePropagator (does the propagator still raise on "
        "a malformed sentry-trace, still continue '-0' as sampled?) and "
        "app/telemetry/sentry_transport.py (the transport's _handle_response)",
    ),
]


@pytest.mark.parametrize(("distribution", "pinned", "recheck"), _PINS, ids=[p[0] for p in _PINS])
def test_library_is_the_version_the_custom_piece_relies_on(
    distribution: str, pinned: str, recheck: str
) -> None:
    assert version(distribution) == pinned, f"{distribution} changed: re-check {recheck}"
