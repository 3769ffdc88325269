"""Traces: one OpenTelemetry TracerProvider, OTLP export, and the propagators that continue
W3C ``traceparent`` and Sentry's ``sentry-trace``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sentry_sdk
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import get_current
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import CarrierT, Getter, default_getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sentry_sdk.consts import EndpointType
from sentry_sdk.integrations.otlp import SentryOTLPPropagator
from sentry_sdk.tracing_utils import extract_sentrytrace_data
from sentry_sdk.utils import Dsn

if TYPE_CHECKING:
    from opentelemetry.context import Context

from app import otlp
from app.scrub import scrub_value
from app.settings import Settings
from app.telemetry.full_queues import RefusingBatchSpanProcessor
from app.telemetry.metrics import DroppedTelemetry

_EXPORT_TIMEOUT_MS = 30_000


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside a valid span."""
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def setup_tracing(
    settings: Settings, resource: Resource, dropped: DroppedTelemetry, sentry_on: bool
) -> TracerProvider:
    # The sampler comes from the standard OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG
    # (default: parent-based, always on). Spans are created even when no exporter is
    # configured, so that logs, errors and exemplars still share a trace id.
    # The SDK's self-metrics are read for what the processors and exporters drop; its
    # per-span counters (started, live) would cost every request and are read by nothing.
    provider = TracerProvider(resource=resource, meter_provider=NoOpMeterProvider())
    self_metrics = dropped.meter_provider
    if settings.otel_exporter_otlp_traces_endpoint is not None:
        # Instrumentations set URL, query and header attributes at various points of a
        # span's life; the exporter masks PII in the final values, on its own thread.
        exporter = otlp.SpanExporter(
            endpoint=str(settings.otel_exporter_otlp_traces_endpoint),
            timeout=settings.otel_exporter_otlp_timeout / 1000,  # ms -> the SDK's seconds
            meter_provider=self_metrics,
            scrub=scrub_value,
            outage=dropped.outage("traces", "traces"),
        )
        provider.add_span_processor(
            RefusingBatchSpanProcessor(
                exporter,
                max_queue_size=settings.otel_bsp_max_queue_size,
                max_export_batch_size=min(512, settings.otel_bsp_max_queue_size),
                meter_provider=self_metrics,
            )
        )
    if sentry_on and settings.sentry_dsn and settings.sentry_traces_sample_rate > 0:
        provider.add_span_processor(
            _TraceRatioFilter(
                RefusingBatchSpanProcessor(
                    _sentry_otlp_exporter(settings, dropped),
                    max_queue_size=settings.otel_bsp_max_queue_size,
                    max_export_batch_size=min(512, settings.otel_bsp_max_queue_size),
                    meter_provider=self_metrics,
                ),
                settings.sentry_traces_sample_rate,
            )
        )
    trace.set_tracer_provider(provider)
    # W3C last: when a request carries both headers, traceparent is authoritative.
    propagate.set_global_textmap(
        CompositePropagator(
            [_SentryTracePropagator(), TraceContextTextMapPropagator(), W3CBaggagePropagator()]
        )
    )
    return provider


class _SentryTracePropagator(SentryOTLPPropagator):
    """Sentry's propagator, with two fixes (sentry-sdk 2.75):

    - it raises TypeError on a ``sentry-trace`` header without a span id (``-``, ``1``, a lone
      trace id): every route would answer 500, before the app's middleware could count or log
      it. Such a header is ignored, as the W3C propagator ignores a bad traceparent;
    - it continues every trace as sampled ("leave the sampling to Sentry"), so a caller's
      ``...-0`` (not sampled) was exported all the same. The caller's decision is kept, as for
      traceparent's flags.
    """

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        try:
            extracted = super().extract(carrier, context, getter)
        except (TypeError, ValueError):
            return context if context is not None else get_current()
        header = getter.get(carrier, "sentry-trace")
        parsed = extract_sentrytrace_data(header[0]) if header else None
        remote = trace.get_current_span(extracted).get_span_context()
        if not (parsed and parsed["parent_sampled"] is False and remote.is_valid):
            return extracted
        unsampled = SpanContext(remote.trace_id, remote.span_id, is_remote=True)
        return trace.set_span_in_context(NonRecordingSpan(unsampled), extracted)


def _sentry_otlp_exporter(settings: Settings, dropped: DroppedTelemetry) -> otlp.SpanExporter:
    """Sentry ingests OTLP traces itself: the same spans, with the same ids, as in Tempo."""
    assert settings.sentry_dsn is not None
    auth = Dsn(settings.sentry_dsn).to_auth(f"sentry.python/{sentry_sdk.VERSION}")
    return otlp.SpanExporter(
        endpoint=auth.get_api_url(EndpointType.OTLP_TRACES),
        headers={"X-Sentry-Auth": auth.to_header()},
        timeout=settings.otel_exporter_otlp_timeout / 1000,  # ms -> the SDK's seconds
        meter_provider=dropped.meter_provider,
        scrub=scrub_value,
        outage=dropped.outage("sentry-traces", "traces"),
    )


class _TraceRatioFilter(SpanProcessor):
    """Forwards whole traces whose id falls within ``ratio``, like ``TraceIdRatioBased``.

    The decision depends only on the trace id, so every span of a trace, in every service
    using the same rule, is kept or left out together.
    """

    _MASK = (1 << 64) - 1

    def __init__(self, delegate: SpanProcessor, ratio: float) -> None:
        self._delegate = delegate
        self._bound = round(ratio * (1 << 64))

    def _keeps(self, trace_id: int) -> bool:
        return trace_id & self._MASK < self._bound

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and self._keeps(span.context.trace_id):
            self._delegate.on_end(span)

    def shutdown(self) -> None:
        self._delegate.shutdown()

    def force_flush(self, timeout_millis: int = _EXPORT_TIMEOUT_MS) -> bool:
        return self._delegate.force_flush(timeout_millis)
