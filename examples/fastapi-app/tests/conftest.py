"""Fixtures for the FastAPI service's tests: real receivers and the real app process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from receivers import OtlpReceiver, SentryReceiver

# The service's package (`app`), importable for unit tests of its pure helpers.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def sentry() -> Iterator[SentryReceiver]:
    with SentryReceiver() as receiver:
        yield receiver


@pytest.fixture
def telemetry_env(otlp: OtlpReceiver, sentry: SentryReceiver) -> dict[str, str]:
    """Every signal on, pointed at the loopback receivers, flushed quickly."""
    return {
        "OTEL_SERVICE_NAME": "fastapi-app",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.traces_endpoint,
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": otlp.logs_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "SENTRY_DSN": sentry.dsn,
        "SENTRY_ENVIRONMENT": "test",
        "SENTRY_RELEASE": "fastapi-app@test",
    }
