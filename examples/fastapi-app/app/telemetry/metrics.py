"""Metrics about the telemetry itself: ``telemetry_dropped_total{signal,reason}``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from opentelemetry.metrics import Counter, NoOpCounter, NoOpMeter, NoOpMeterProvider
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from app.outage import Outage

# The OpenTelemetry SDK counts its own queue overflows and failed exports only with this switch
# on; telemetry_dropped_total is built from those counts, so setup turns it on for the process.
# (It used to be on only while the processors were made, sparing the tracers made later their
# per-span counters: make bench measured that at under 1% of a request, 745k against 761k
# instructions at 10% traced on 2026-12-04, too little for custom code.)
# https://opentelemetry-python.readthedocs.io/en/latest/sdk/environment_variables.html
SDK_SELF_METRICS = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"


class DroppedTelemetry(Collector):
    """``telemetry_dropped_total{signal,reason}``: data lost instead of waited for.

    traces and logs: the OpenTelemetry SDK's own counts of items rejected by a full queue and
    of items in failed exports (``meter_provider`` is given to its processors and exporters);
    errors: Sentry events its transport reports as lost, and those over the event budget.
    """

    _SDK_COUNTERS: ClassVar[dict[str, str]] = {
        "otel.sdk.processor.span.processed": "traces",
        "otel.sdk.exporter.span.exported": "traces",
        "otel.sdk.processor.log.processed": "logs",
        "otel.sdk.exporter.log.exported": "logs",
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], float] = {}
        self.meter_provider = _SdkCounts(self._count_sdk)

    def add(self, signal: str, reason: str, amount: float = 1) -> None:
        with self._lock:
            self._counts[(signal, reason)] = self._counts.get((signal, reason), 0) + amount

    def outage(self, backend: str, signal: str) -> Outage:
        """An outage tracker for ``backend``, whose losses are counted under ``signal``."""
        return Outage(backend, lambda: self.by_signal()[signal])

    def by_signal(self) -> dict[str, int]:
        """Items dropped so far, per signal, whatever the reason."""
        counts: dict[str, int] = {}
        for (signal, _), value in self.totals().items():
            counts[signal] = counts.get(signal, 0) + int(value)
        return counts

    def totals(self) -> dict[tuple[str, str], float]:
        totals: dict[tuple[str, str], float] = {
            (signal, reason): 0.0
            for signal in ("traces", "logs", "errors")
            for reason in ("queue_full",)
        }
        with self._lock:
            totals.update(self._counts)
        return totals

    def _count_sdk(self, name: str, attributes: Mapping[str, Any] | None, amount: float) -> None:
        # Only outcomes with an error type are losses; successes are counted with none.
        reason = attributes.get("error.type") if attributes else None
        signal = self._SDK_COUNTERS.get(name)
        if reason and signal:
            self.add(signal, str(reason), amount)

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "telemetry_dropped",
            "Telemetry items dropped instead of delaying requests, by signal and reason.",
            labels=["signal", "reason"],
        )
        for (signal, reason), value in sorted(self.totals().items()):
            family.add_metric([signal, reason], value)
        yield family

    def describe(self) -> Iterable[CounterMetricFamily]:
        return []


class _SdkCounts(NoOpMeterProvider):
    """The SDK self-metrics' counters as plain sums handed to ``count``; its other
    instruments (queue size, export duration) do nothing. The SDK's MeterProvider cost ~15 us
    a count, paid for every item dropped while a backend is down (issue #7, bench/)."""

    def __init__(self, count: Callable[[str, Mapping[str, Any] | None, float], None]) -> None:
        self._count = count

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> _SdkCountsMeter:
        return _SdkCountsMeter(name, self._count)


class _SdkCountsMeter(NoOpMeter):
    def __init__(self, name: str, count: Callable[[str, Mapping[str, Any] | None, float], None]):
        super().__init__(name)
        self._count = count

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Counter:
        return _SdkCounter(name, self._count)


class _SdkCounter(NoOpCounter):
    def __init__(self, name: str, count: Callable[[str, Mapping[str, Any] | None, float], None]):
        super().__init__(name)
        self._metric = name
        self._count = count

    def add(self, amount: float, attributes: Any = None, context: Any = None) -> None:
        self._count(self._metric, attributes, amount)
