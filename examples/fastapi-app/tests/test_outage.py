"""A telemetry backend that is down or hangs never slows or breaks a request."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client.parser import text_string_to_metric_families
from receivers import OtlpReceiver, SentryReceiver, wait_for
from services import fastapi_app, free_port

from app import otlp
from app.telemetry.full_queues import RefusingBatchSpanProcessor
from app.telemetry.metrics import DroppedTelemetry

EXPORT_TIMEOUT_MS = 5000  # what a blocked request would wait at least
REQUESTS = 400


@contextmanager
def broken_backends(kind: str) -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        if kind == "refused":
            otlp_url = f"http://127.0.0.1:{free_port()}"
            dsn = f"http://publickey@127.0.0.1:{free_port()}/1"
            traces, logs = f"{otlp_url}/v1/traces", f"{otlp_url}/otlp/v1/logs"
        else:
            otlp = stack.enter_context(OtlpReceiver(mode="hang"))
            sentry = stack.enter_context(SentryReceiver(mode="hang"))
            traces, logs, dsn = otlp.traces_endpoint, otlp.logs_endpoint, sentry.dsn
        yield {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": traces,
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": logs,
            "OTEL_EXPORTER_OTLP_TIMEOUT": str(EXPORT_TIMEOUT_MS),
            "OTEL_BSP_MAX_QUEUE_SIZE": "64",
            "OTEL_BLRP_MAX_QUEUE_SIZE": "64",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_BLRP_SCHEDULE_DELAY": "50",
            "SENTRY_DSN": dsn,
        }


def _dropped(base_url: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{base_url}/metrics").text):
        for sample in family.samples:
            if sample.name == "telemetry_dropped_total":
                signal = sample.labels["signal"]
                totals[signal] = totals.get(signal, 0.0) + sample.value
    return totals


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("kind", ["refused", "hang"])
def test_requests_do_not_wait_for_broken_backends(kind: str) -> None:
    with broken_backends(kind) as env, fastapi_app(env) as app, httpx.Client() as client:
        for _ in range(50):  # warm up: imports, first connections, allocator pools
            client.get(f"{app.url}/hello")
        rss_before = _rss_mb(app.process.pid)

        slowest = 0.0
        statuses: dict[int, int] = {}
        for i in range(REQUESTS):
            # Half errors: more events than Sentry's transport queue holds (100), so a hanging
            # Sentry must overflow it.
            path = "/error?kind=handled" if i % 2 == 0 else f"/hello?name=n{i}"
            started = time.perf_counter()
            response = client.get(app.url + path)
            slowest = max(slowest, time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        rss_growth = _rss_mb(app.process.pid) - rss_before
        time.sleep(1.0)  # let exporters notice the failures
        dropped = _dropped(app.url)

    assert statuses == {200: REQUESTS // 2, 500: REQUESTS // 2}, statuses
    # Had any request waited on an exporter or on Sentry, it would have taken >= 5 s.
    assert slowest < 1.0, f"slowest request took {slowest:.2f}s"
    assert rss_growth < 50, f"RSS grew by {rss_growth:.1f} MB"
    for signal in ("traces", "logs", "errors"):
        assert dropped.get(signal, 0) > 0, f"no dropped {signal} counted: {dropped}"


def _log_lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _messages(output: str, prefix: str) -> list[str]:
    messages = [str(line["message"]) for line in _log_lines(output)]
    return [message for message in messages if message.startswith(prefix)]


def test_an_unreachable_backend_is_logged_once_not_per_item() -> None:
    """Sentry's transport retried each event three times, logging a urllib3 warning for each
    try, and the OTLP exporters logged an error for each batch: 18 lines for 6 errors, on stdout
    and in Loki. The loss is counted per item; the log says once that delivery stopped."""
    closed = f"127.0.0.1:{free_port()}"
    env = {
        "SENTRY_DSN": f"http://publickey@{closed}/1",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://{closed}/v1/traces",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"http://{closed}/otlp/v1/logs",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_BLRP_SCHEDULE_DELAY": "50",
    }
    with fastapi_app(env) as app, httpx.Client() as client:
        for _ in range(6):
            client.get(f"{app.url}/error", params={"kind": "handled"})
            time.sleep(0.2)  # each error in batches of its own
        wait_for(
            lambda: all(_dropped(app.url).get(s, 0) >= 6 for s in ("traces", "logs", "errors")),
            message="every lost span, log record and event counted",
        )
    output = app.output()
    for backend in ("sentry", "traces", "logs"):
        failing = _messages(output, f"{backend}: delivery failing since ")
        assert len(failing) == 1, f"{backend}: {failing}"
    loggers = {str(line["logger"]) for line in _log_lines(output)}
    assert not {name for name in loggers if name.startswith(("urllib3", "opentelemetry"))}
    assert "Retrying" not in output


def test_sentry_coming_back_is_logged_with_what_was_lost() -> None:
    with SentryReceiver(mode="error") as sentry:
        _outage_then_recovery(sentry, {"SENTRY_DSN": sentry.dsn}, {"sentry": "errors"})


def test_otlp_backends_coming_back_are_logged_with_what_was_lost() -> None:
    with OtlpReceiver(mode="error") as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.traces_endpoint,
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": receiver.logs_endpoint,
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_BLRP_SCHEDULE_DELAY": "50",
        }
        _outage_then_recovery(receiver, env, {"traces": "traces", "logs": "logs"})


def _outage_then_recovery(
    receiver: SentryReceiver | OtlpReceiver, env: dict[str, str], backends: dict[str, str]
) -> None:
    """Errors while ``receiver`` answers 503, then one more once it answers again: each of
    ``backends`` (name: its signal) logs one line as delivery fails, one as it recovers."""
    with fastapi_app(env) as app, httpx.Client() as client:
        for _ in range(4):
            client.get(f"{app.url}/error", params={"kind": "handled"})
            time.sleep(0.2)  # each error in batches of its own
        wait_for(
            lambda: all(_dropped(app.url).get(s, 0) >= 4 for s in backends.values()),
            message="the losses counted",
        )
        receiver.mode = "ok"
        client.get(f"{app.url}/error", params={"kind": "handled"})
        for name in backends:
            wait_for(
                lambda name=name: _messages(app.output(), f"{name}: delivery recovered"),
                message=f"{name} recovered",
            )
        lost = _dropped(app.url)
    for name, signal in backends.items():
        assert len(_messages(app.output(), f"{name}: delivery failing since ")) == 1
        assert _messages(app.output(), f"{name}: delivery recovered") == [
            f"{name}: delivery recovered after {lost[signal]:.0f} dropped"
        ]


class _StalledExporter(SpanExporter):
    """A span backend that does not answer until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(10)
        self.exported.extend(span.name for span in spans)
        return SpanExportResult.SUCCESS


def test_a_full_span_queue_keeps_what_it_holds_and_counts_what_it_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What telemetry.setup() switches on: the SDK's counts that telemetry_dropped_total reads.
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    dropped = DroppedTelemetry()
    exporter = _StalledExporter()
    processor = RefusingBatchSpanProcessor(
        exporter,
        max_queue_size=4,
        max_export_batch_size=4,
        schedule_delay_millis=60_000,
        meter_provider=dropped.meter_provider,
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")

    def end_spans(first: int, count: int) -> None:
        for i in range(first, first + count):
            tracer.start_span(f"s{i}").end()

    end_spans(0, 4)  # a full batch: the worker takes it and waits on the backend
    deadline = time.monotonic() + 5
    while len(processor._batch_processor._queue) and time.monotonic() < deadline:
        time.sleep(0.01)
    end_spans(4, 4)  # fills the queue
    end_spans(8, 6)  # refused: counted, and the queued spans stay
    exporter.release.set()
    assert processor.force_flush(5_000)
    provider.shutdown()

    assert exporter.exported == [f"s{i}" for i in range(8)]
    assert dropped.totals()[("traces", "queue_full")] == 6


def test_a_batch_that_could_not_be_sent_is_freed_when_the_export_returns() -> None:
    # A refused connection leaves reference cycles in the HTTP stack; if they held the batch,
    # every failed export would keep 512 spans until a full garbage collection, which under a
    # steady load comes rarely: memory grew by ~50 MB a minute while a backend was down.
    exporter = otlp.SpanExporter(endpoint=f"http://127.0.0.1:{free_port()}/v1/traces", timeout=1)
    tracer = TracerProvider().get_tracer("test")
    batch: list[ReadableSpan] = []
    for i in range(64):
        span = tracer.start_span(f"s{i}", attributes={"http.route": "/hello"})
        span.end()
        batch.append(span)  # type: ignore[arg-type]
    alive = [weakref.ref(span) for span in batch]

    gc.disable()  # only reference counting may free them
    try:
        assert exporter.export(batch) is SpanExportResult.FAILURE
        del batch, span
        held = sum(ref() is not None for ref in alive)
    finally:
        gc.enable()
    assert held == 0, f"{held} of 64 spans outlived their failed export"


@pytest.mark.parametrize("before", [None, "false"])
def test_setup_counts_drops_whatever_the_sdk_switch_said(before: str | None) -> None:
    # telemetry_dropped_total is built from the SDK's own drop counts, which it keeps only with
    # its self-metrics switch on: a deployment that turned it off must not lose the metric.
    script = """
import os, sys
from app.settings import load_settings
from app import telemetry
from app.telemetry.full_queues import RefusingBatchSpanProcessor
active = telemetry.setup(load_settings())
processor = active.tracer_provider._active_span_processor._span_processors[0]
assert isinstance(processor, RefusingBatchSpanProcessor)
for i in range(8):
    active.tracer_provider.get_tracer("t").start_span(f"s{i}").end()
active.tracer_provider.force_flush(2000)
dropped = sum(n for (signal, _), n in active.dropped.totals().items() if signal == "traces")
# On stderr, in one write: the service's own log lines go to stdout from another thread.
switch = os.environ.get('OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED')
sys.stderr.write(f"RESULT {switch} {dropped}\\n")
"""
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1/traces",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
    }
    env.pop("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", None)
    if before is not None:
        env["OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"] = before
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = [line for line in done.stderr.splitlines() if line.startswith("RESULT ")]
    assert result, done.stdout + done.stderr
    _, switch, dropped = result[-1].split()
    assert switch == "true"
    assert float(dropped) == 8, "the refused export's spans were not counted as dropped"
