"""Fixtures for the FastAPI service's tests: real receivers and the real app process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import services
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
    return services.telemetry_env(
        "fastapi-app",
        otlp,
        sentry,
        SENTRY_ENVIRONMENT="test",
        SENTRY_RELEASE="fastapi-app@test",
    )
