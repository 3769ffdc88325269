"""app.otlp writes the same OTLP messages as the OpenTelemetry SDK's encoder, only cheaper.

Spans and log records are made by the real SDK from generated names, attributes, events,
links, statuses and trace contexts; the bytes written by app.otlp are parsed with the
official protobuf classes and must equal the SDK encoder's message.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as sdk_encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
    encode_spans as sdk_encode_spans,
)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    LogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from app import otlp
from app.scrub import FILTERED, scrub_value

_text = st.text(max_size=40)
_scalar = st.one_of(
    _text,
    st.booleans(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.floats(allow_nan=False),
)
_attribute_value = st.one_of(
    _scalar,
    st.lists(_text, max_size=3),
    st.lists(st.integers(-1000, 1000), max_size=3),
)
_attributes = st.dictionaries(st.text(min_size=1, max_size=20), _attribute_value, max_size=6)
_ids = st.tuples(st.integers(1, (1 << 128) - 1), st.integers(1, (1 << 64) - 1))
_trace_state = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
    st.from_regex(r"[a-zA-Z0-9]{1,8}", fullmatch=True),
    max_size=2,
)


class _Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


_span_spec = st.fixed_dictionaries(
    {
        "name": _text,
        "kind": st.sampled_from(list(SpanKind)),
        "attributes": _attributes,
        "parent": st.none() | st.tuples(_ids, st.booleans(), _trace_state),
        "events": st.lists(st.tuples(_text, _attributes), max_size=2),
        "links": st.lists(st.tuples(_ids, st.booleans(), _attributes), max_size=2),
        "status": st.sampled_from(list(StatusCode)),
        "description": _text,
        "scope": st.sampled_from([("fastapi", "0.1", None), ("app", None, "https://s/1")]),
    }
)


def _make_spans(specs: list[dict[str, Any]]) -> list[ReadableSpan]:
    collect = _Collect()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "svc", "n": 3, "tags": ["a", "b"]})
    )
    provider.add_span_processor(SimpleSpanProcessor(collect))
    for spec in specs:
        name, version, schema = spec["scope"]
        tracer = provider.get_tracer(name, version, schema_url=schema)
        context = None
        if spec["parent"] is not None:
            (trace_id, span_id), remote, state = spec["parent"]
            parent = SpanContext(
                trace_id, span_id, remote, TraceFlags(1), TraceState(list(state.items()))
            )
            context = set_span_in_context(NonRecordingSpan(parent))
        links = [
            Link(SpanContext(t, s, remote, TraceFlags(1)), attributes)
            for (t, s), remote, attributes in spec["links"]
        ]
        span = tracer.start_span(
            spec["name"], context, spec["kind"], spec["attributes"], links=links
        )
        for event_name, attributes in spec["events"]:
            span.add_event(event_name, attributes)
        description = spec["description"] if spec["status"] is StatusCode.ERROR else None
        span.set_status(Status(spec["status"], description))
        span.end()
    return collect.spans


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_span_spec, min_size=1, max_size=4))
def test_spans_encode_to_the_sdk_message(specs: list[dict[str, Any]]) -> None:
    spans = _make_spans(specs)
    ours = ExportTraceServiceRequest.FromString(otlp.encode_spans(spans))
    assert ours == sdk_encode_spans(spans)


class _CollectLogs(LogRecordExporter):
    def __init__(self) -> None:
        self.records: list[ReadableLogRecord] = []

    def export(self, batch: Any) -> LogRecordExportResult:
        self.records.extend(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


_body = st.none() | _scalar | st.lists(_scalar, max_size=3) | st.dictionaries(_text, _scalar)
_log_spec = st.fixed_dictionaries(
    {
        "body": _body,
        "attributes": _attributes,
        "severity": st.sampled_from([None, 5, 9, 13, 17, 21]),
        "severity_text": st.none() | st.sampled_from(["DEBUG", "INFO", "WARN", "ERROR"]),
        "context": st.none() | st.tuples(_ids, st.sampled_from([0, 1])),
        "event_name": st.none() | _text,
        "logger": st.sampled_from(["app.access", "app"]),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_log_spec, min_size=1, max_size=4))
def test_log_records_encode_to_the_sdk_message(specs: list[dict[str, Any]]) -> None:
    from opentelemetry._logs import SeverityNumber

    collect = _CollectLogs()
    provider = LoggerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(collect))
    for spec in specs:
        context = None
        if spec["context"] is not None:
            (trace_id, span_id), flags = spec["context"]
            span_context = SpanContext(trace_id, span_id, False, TraceFlags(flags))
            context = set_span_in_context(NonRecordingSpan(span_context))
        provider.get_logger(spec["logger"]).emit(
            body=spec["body"],
            attributes=spec["attributes"],
            severity_number=SeverityNumber(spec["severity"]) if spec["severity"] else None,
            severity_text=spec["severity_text"],
            context=context,
            event_name=spec["event_name"],
        )
    ours = ExportLogsServiceRequest.FromString(otlp.encode_logs(collect.records))
    assert ours == sdk_encode_logs(collect.records)


def test_span_attributes_are_scrubbed_in_the_export() -> None:
    (span,) = _make_spans(
        [
            {
                "name": "GET /login",
                "kind": SpanKind.SERVER,
                "attributes": {
                    "url.query": "user=ann&password=hunter2",
                    "http.request.header.authorization": ["Bearer abc.def"],
                    "enduser.email": "ann@example.com",
                    "http.response.status_code": 200,
                },
                "parent": None,
                "events": [("exception", {"exception.message": "card 4111 1111 1111 1111"})],
                "links": [],
                "status": StatusCode.UNSET,
                "description": "",
                "scope": ("fastapi", "0.1", None),
            }
        ]
    )
    encoder_output = otlp.encode_spans([span], scrub=scrub_value)
    exported = ExportTraceServiceRequest.FromString(encoder_output)
    encoded = exported.resource_spans[0].scope_spans[0].spans[0]
    values = {kv.key: kv.value for kv in encoded.attributes}
    assert values["url.query"].string_value == f"user=ann&password={FILTERED}"
    assert values["http.request.header.authorization"].string_value == FILTERED
    assert values["enduser.email"].string_value == FILTERED
    assert values["http.response.status_code"].int_value == 200
    assert FILTERED in encoded.events[0].attributes[0].value.string_value
    for secret in (b"hunter2", b"abc.def", b"ann@example.com", b"4111"):
        assert secret not in encoder_output
    # Encoded again from the pair cache: still scrubbed.
    assert otlp.SpanExporter(scrub=scrub_value)._encoder.spans([span]) == encoder_output


def test_an_attribute_the_sdk_cannot_encode_is_dropped_alone() -> None:
    (span,) = _make_spans(
        [
            {
                "name": "x",
                "kind": SpanKind.INTERNAL,
                "attributes": {"ok": 1.5, "too.big": 1 << 70},
                "parent": None,
                "events": [],
                "links": [],
                "status": StatusCode.OK,
                "description": "",
                "scope": ("app", None, "https://s/1"),
            }
        ]
    )
    encoded = ExportTraceServiceRequest.FromString(otlp.encode_spans([span]))
    attributes = encoded.resource_spans[0].scope_spans[0].spans[0].attributes
    assert [(kv.key, kv.value.double_value) for kv in attributes] == [("ok", 1.5)]
    assert not math.isnan(attributes[0].value.double_value)


@pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")
def test_the_log_handler_records_what_the_sdks_handler_records() -> None:
    """app.telemetry's OTLP log handler builds its records directly; for the same ``logging``
    records (an app logger, extra fields, inside a span) the SDK's LoggingHandler sends the
    same message, but for the time each was observed."""
    import logging

    from opentelemetry import context as otel_context
    from opentelemetry.sdk._logs import LoggingHandler

    from app.telemetry.full_queues import RefusingBatchLogProcessor
    from app.telemetry.otlp_logs import OtlpLogHandler

    resource = Resource.create({"service.name": "svc"})
    theirs = _CollectLogs()
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(theirs))
    ours = _CollectLogs()
    processor = RefusingBatchLogProcessor(ours)
    logger = logging.getLogger("app.test_otlp")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handlers = [LoggingHandler(logger_provider=provider), OtlpLogHandler(processor, resource)]
    for handler in handlers:
        logger.addHandler(handler)
    span = NonRecordingSpan(SpanContext(0xABC, 0xDEF, False, TraceFlags(1)))
    token = otel_context.attach(set_span_in_context(span))
    try:
        logger.info("order %s placed", "o-1", extra={"order_id": "o-1", "items": 3})
        logger.warning("slow downstream")  # OTLP says WARN
    finally:
        otel_context.detach(token)
        for handler in handlers:
            logger.removeHandler(handler)
    logger.error("outside any span")
    processor.shutdown()  # exports what is queued

    def message(records: list[ReadableLogRecord]) -> ExportLogsServiceRequest:
        decoded = ExportLogsServiceRequest.FromString(otlp.encode_logs(records))
        for record in decoded.resource_logs[0].scope_logs[0].log_records:
            record.ClearField("observed_time_unix_nano")
        return decoded

    assert len(ours.records) == 2
    assert message(ours.records) == message(theirs.records)
    first = message(ours.records).resource_logs[0].scope_logs[0].log_records[0]
    assert first.trace_id == (0xABC).to_bytes(16, "big") and first.body.string_value == (
        "order o-1 placed"
    )
