"""SDK batch processors whose full queue refuses the new item instead of evicting the oldest.

A custom piece, kept for the outage targets (a backend down must not slow requests) rather
than for the cost of a healthy request. Measured with ``make bench``'s outage cases on
2026-11-22 (issue #7): with the SDK's evicting queue and a backend down, every span and log
record lived for a whole queue's turn and was promoted and rescanned by the garbage collector;
young collections took up to 40 ms of CPU, p99 35-40 ms against 4-6 ms with healthy backends,
4-5 ms after this change (docs/bench.md). The Node and Java SDKs refuse the new item too. It
reaches into opentelemetry-sdk 1.45 internals (the batch processor's ``_batch_processor``,
``_queue``, ``_max_queue_size``, ``_metrics``): tests/test_pins.py fails when that changes.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor


class RefusingBatchLogProcessor(BatchLogRecordProcessor):
    """The SDK's batching (bounded queue, background export, drops counted), fed records that
    are read-only already: ``on_emit`` would copy each into one. A full queue refuses the new
    record (see _emit_unless_full)."""

    def enqueue(self, record: ReadableLogRecord) -> None:
        _emit_unless_full(self._batch_processor, record)


class RefusingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch span processor, except that a full queue refuses the new span (see
    _emit_unless_full)."""

    def on_end(self, span: ReadableSpan) -> None:
        if span.context and span.context.trace_flags.sampled:
            _emit_unless_full(self._batch_processor, span)


def _emit_unless_full(batch: Any, item: Any) -> None:
    """Queues ``item`` in an SDK batch processor, or counts it as dropped (``queue_full``, as
    the SDK does) when the queue is full.

    The SDK's full queue evicts its oldest item for each new one (opentelemetry-sdk 1.45,
    ``BatchProcessor.emit``). While a backend is down, every span and log record then lived
    for a whole queue's turn, long enough for the garbage collector to promote it and scan
    it again and again: its collections took up to 75 ms, stalling requests. Refusing the
    new item, as the Node and Java SDKs do, lets it die young and leaves the queue alone.
    """
    if len(batch._queue) >= batch._max_queue_size:
        batch._metrics.drop_items(1)
        return
    batch.emit(item)
