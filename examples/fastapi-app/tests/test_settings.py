"""Configuration from the standard OTLP variables (OpenTelemetry exporter spec)."""

from __future__ import annotations

import pytest

from app.settings import ConfigurationError, load_settings


def test_base_otlp_endpoint_gets_each_signal_path_and_a_per_signal_variable_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector:4318/")
    settings = load_settings()
    assert (
        str(settings.otel_exporter_otlp_traces_endpoint) == "http://otel-collector:4318/v1/traces"
    )
    assert str(settings.otel_exporter_otlp_logs_endpoint) == "http://otel-collector:4318/v1/logs"

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://loki:3100/otlp/v1/logs")
    settings = load_settings()
    assert (
        str(settings.otel_exporter_otlp_traces_endpoint) == "http://otel-collector:4318/v1/traces"
    )
    assert str(settings.otel_exporter_otlp_logs_endpoint) == "http://loki:3100/otlp/v1/logs"


def test_no_otlp_endpoint_exports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("", "_TRACES", "_LOGS"):
        monkeypatch.delenv(f"OTEL_EXPORTER_OTLP{name}_ENDPOINT", raising=False)
    settings = load_settings()
    assert settings.otel_exporter_otlp_traces_endpoint is None
    assert settings.otel_exporter_otlp_logs_endpoint is None


def test_a_base_endpoint_that_is_not_a_url_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "otel-collector:4318")
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        load_settings()
