"""OTLP log records, each built once, read-only, straight from the ``logging`` record.

A custom piece, kept because ``make bench`` shows it is worth it: the SDK's ``LoggingHandler``
builds an API record, a writable SDK record with checked attributes, then a read-only copy for
the batch. bench/stock_fastapi.py starts the service with the SDK's handler swapped back; on
2026-12-04 a 100%-traced ``/hello`` (one access line) cost 1,301k instructions (callgrind) with
this handler and 1,525k with the SDK's: 15% of the request saved, over the 10% a custom piece
must save (bench/results.md has the latest figure). It relies on opentelemetry-sdk internals
(``_RESERVED_ATTRS``, ``std_to_otel``, the batch processor's queue): tests/test_pins.py fails
when that version changes, and tests/test_otlp.py checks that both handlers send the same
message.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import LogRecord as APILogRecord
from opentelemetry.sdk._logs import LogRecordLimits, ReadableLogRecord
from opentelemetry.sdk._logs._internal import _RESERVED_ATTRS, std_to_otel
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from app.telemetry.full_queues import RefusingBatchLogProcessor

# Added to records for the JSON line only: the OTLP record has them as its own fields (trace
# and span id) and resource (service), and Loki keeps those as structured metadata.
_JSON_ONLY_FIELDS = frozenset({"service", "trace_id", "span_id", "_signalbox_done"})
_NOT_ATTRIBUTES = _RESERVED_ATTRS | _JSON_ONLY_FIELDS | {"color_message"}


class OtlpLogHandler(logging.Handler):
    """Log records to OTLP, each built once, read-only, straight from the ``logging`` record.

    The SDK's LoggingHandler builds an API record, a writable SDK record with checked
    attributes, then a read-only copy for the batch: ~35 us a line, a third of an access
    line's cost (issue #7, bench/). The scope is the logger's name and the trace context the
    current span's, as there; attributes are fewer: no duplicate of the record's own ids, no
    code location for access lines (always the same middleware line), and the traceback
    _LogContextFilter formatted (``exc_text``) instead of a second formatting. The encoder
    (app.otlp) drops an attribute value OTLP cannot carry, as the SDK does.
    """

    def __init__(self, processor: RefusingBatchLogProcessor, resource: Resource) -> None:
        super().__init__()
        self._processor = processor
        self._resource = resource
        self._limits = LogRecordLimits()
        self._scopes: dict[str, InstrumentationScope] = {}  # one per logger, as get_logger

    def emit(self, record: logging.LogRecord) -> None:
        scope = self._scopes.get(record.name)
        if scope is None:
            scope = self._scopes.setdefault(record.name, InstrumentationScope(record.name))
        context = trace.get_current_span().get_span_context()
        self._processor.enqueue(
            ReadableLogRecord(
                APILogRecord(
                    timestamp=int(record.created * 1e9),
                    observed_timestamp=time.time_ns(),
                    trace_id=context.trace_id,
                    span_id=context.span_id,
                    trace_flags=context.trace_flags,
                    severity_text=_OTEL_SEVERITY_TEXT.get(record.levelname, record.levelname),
                    severity_number=std_to_otel(record.levelno),
                    body=record.getMessage(),
                    attributes=self._attributes(record),
                ),
                resource=self._resource,
                instrumentation_scope=scope,
                limits=self._limits,
            )
        )

    @staticmethod
    def _attributes(record: logging.LogRecord) -> dict[str, Any]:
        attributes = {k: v for k, v in record.__dict__.items() if k not in _NOT_ATTRIBUTES}
        if record.name != "app.access":
            attributes["code.file.path"] = record.pathname
            attributes["code.function.name"] = record.funcName
            attributes["code.line.number"] = record.lineno
        if record.exc_text:
            attributes["exception.stacktrace"] = record.exc_text
        return attributes


# https://opentelemetry.io/docs/specs/otel/logs/data-model/#displaying-severity
_OTEL_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}
