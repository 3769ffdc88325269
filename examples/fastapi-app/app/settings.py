"""The service's configuration: environment variables only, validated once at start-up.

Standard names are used where a standard exists (``OTEL_*`` from the OpenTelemetry spec,
``SENTRY_*`` from Sentry's SDK docs), so the same variables work for every service in the stack.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    HttpUrl,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SampleRate = Annotated[float, Field(ge=0.0, le=1.0)]

# LOG_LEVEL's usual spellings, in any case: the same names the Node service takes, so one
# variable serves both. Python has no level below DEBUG for "trace"; "silent" logs nothing.
_LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "critical": logging.CRITICAL,
    "silent": logging.CRITICAL + 1,
}


# OTEL_TRACES_SAMPLER values the OpenTelemetry SDKs of both services build in, in any case.
# https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/#general-sdk-configuration
_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", env_prefix="")

    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    # "::" listens on IPv6 and IPv4 (dual-stack) where the host has IPv6, else on 0.0.0.0.
    host: str = "::"
    log_level: int = logging.INFO  # LOG_LEVEL, by name (see _LOG_LEVELS)
    # Which requests get an access log line: "sampled" = those whose trace is sampled, and
    # every 5xx; "all" = every request. With the default always-on sampler both log everything;
    # at 10% trace sampling, "sampled" keeps 1 line in 10 (each one with its trace in Tempo)
    # and all errors. The RED metrics count every request either way.
    access_log: Literal["sampled", "all"] = "sampled"

    otel_service_name: str = "fastapi-app"
    # OTLP/HTTP. The base endpoint (the stack's collector) gets /v1/traces and /v1/logs
    # appended; a per-signal variable is used as it is and wins for its signal.
    # https://opentelemetry.io/docs/specs/otel/protocol/exporter/#endpoint-urls-for-otlphttp
    otel_exporter_otlp_endpoint: HttpUrl | None = None
    otel_exporter_otlp_traces_endpoint: HttpUrl | None = None
    otel_exporter_otlp_logs_endpoint: HttpUrl | None = None
    # Bounded buffers: when a backend is slow or down, telemetry is dropped (and counted)
    # rather than held in memory or waited for.
    otel_bsp_max_queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 2048
    otel_blrp_max_queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 2048
    # Milliseconds, the OpenTelemetry spec's unit (the Python SDK's own reading is seconds, a
    # known deviation; the SDK exporters are given seconds, converted, by app.telemetry).
    otel_exporter_otlp_timeout: Annotated[int, Field(ge=1, le=60_000)] = 5000
    # Read by the SDK itself; checked here so that a typo stops start-up instead of silently
    # falling back to sampling everything.
    otel_traces_sampler: str = "parentbased_always_on"
    otel_traces_sampler_arg: str | None = None

    sentry_dsn: str | None = None
    sentry_environment: str = "development"
    sentry_release: str | None = Field(
        default=None, validation_alias=AliasChoices("SENTRY_RELEASE", "GIT_COMMIT")
    )
    git_commit: str = "unknown"
    sentry_sample_rate: SampleRate = 1.0
    # Share of traces also sent to Sentry as performance data (same spans, same ids; see
    # README "Sentry performance data"). 0 keeps Sentry for errors only.
    sentry_traces_sample_rate: SampleRate = 0.0
    sentry_profiles_sample_rate: SampleRate = 0.0
    # Exception class names (e.g. "ClientDisconnect,CancelledError") never sent to Sentry.
    sentry_ignore_errors: Annotated[tuple[str, ...], NoDecode] = ()
    sentry_include_local_variables: bool = False
    # At most this many Sentry events a second from this process, in bursts of up to one
    # second's worth. An error storm (a dependency down, every request failing) would
    # otherwise spend ~3 ms of CPU per event on building and sending events that Sentry
    # groups into one issue, starving the requests that still work. Errors over the limit are
    # still logged and recorded on their span, and counted in
    # telemetry_dropped_total{signal="errors",reason="backpressure"}. 0 = no limit.
    sentry_max_events_per_second: Annotated[float, Field(ge=0, le=10_000)] = 10.0

    downstream_url: HttpUrl = HttpUrl("http://127.0.0.1:9091")
    downstream_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0

    @field_validator("sentry_ignore_errors", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_name(cls, value: object) -> object:
        if isinstance(value, str):
            level = _LOG_LEVELS.get(value.strip().lower())
            if level is None:
                raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
            return level
        return value

    @field_validator("otel_traces_sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        name = value.strip().lower()  # as the SDKs read it
        if name not in _SAMPLERS:
            raise ValueError(f"must be one of {', '.join(_SAMPLERS)}")
        return name

    @field_validator("otel_traces_sampler_arg")
    @classmethod
    def _sampler_ratio(cls, value: str | None, info: ValidationInfo) -> str | None:
        sampler = info.data.get("otel_traces_sampler")  # absent when it was invalid itself
        if value is None or sampler is None:
            return value
        if not sampler.endswith("traceidratio"):
            # The spec says ignore it; whoever set only the ratio would get every trace.
            raise ValueError(
                "only read by the traceidratio samplers: set OTEL_TRACES_SAMPLER too, "
                "e.g. parentbased_traceidratio"
            )
        try:
            ratio = float(value)
        except ValueError:
            ratio = math.nan
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("must be a number from 0 to 1")
        return value

    @field_validator("sentry_dsn", "sentry_release", "otel_traces_sampler_arg", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("sentry_dsn")
    @classmethod
    def _dsn_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from sentry_sdk.utils import BadDsn, Dsn

        try:
            Dsn(value)
        except BadDsn as exc:
            raise ValueError(f"not a Sentry DSN ({exc})") from None
        return value

    @model_validator(mode="after")
    def _signal_endpoints(self) -> Settings:
        if self.otel_exporter_otlp_endpoint is not None:
            base = str(self.otel_exporter_otlp_endpoint).rstrip("/")
            if self.otel_exporter_otlp_traces_endpoint is None:
                self.otel_exporter_otlp_traces_endpoint = HttpUrl(f"{base}/v1/traces")
            if self.otel_exporter_otlp_logs_endpoint is None:
                self.otel_exporter_otlp_logs_endpoint = HttpUrl(f"{base}/v1/logs")
        return self

    @property
    def version(self) -> str:
        return self.sentry_release or self.git_commit


class ConfigurationError(Exception):
    """Start-up configuration is invalid; the message names every offending variable."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            variable = str(error["loc"][0]).upper() if error["loc"] else "?"
            problems.append(f"{variable}: {error['msg']} (got {error.get('input')!r})")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
