"""OTLP/HTTP span and log exporters with a cheaper protobuf encoder than the SDK's.

The SDK's encoder builds a protobuf object for every attribute of every span and log record
(~100 us per span on the 2-core benchmark machine, about as much as the request it describes).
This one writes the same wire format directly, and remembers the encoding of recent
attribute pairs: in telemetry the same ``http.route=/hello`` or ``service.name=x`` comes back
thousands of times. A span costs ~20 us. Its output parses to a message equal to the SDK's
(tests/test_otlp.py checks that on generated spans and records), and everything else (HTTP,
retries, timeouts, the SDK's own export metrics) is the SDK exporter's.

A custom piece, kept because ``make bench`` shows it is worth it: it starts the service with
the SDK's encoder swapped back (bench/stock_fastapi.py) and counts instructions per request with
callgrind. On 2026-12-04, a 100%-traced ``/hello`` (one span and one log record a request)
cost 1,301k instructions with this encoder and 1,725k with the SDK's: it saves 25% of the
request, over the 10% a custom piece must save (bench/results.md has the latest figure). The
cost it removes is the SDK building a protobuf object per attribute (44.6-48.1 us a span against
14.3-16.0 us here, scrubbing included, in a scratch timing of 512 spans). tests/test_pins.py
fails when the exporter's version changes.

Wire format: https://protobuf.dev/programming-guides/encoding/ and the OTLP messages in
https://github.com/open-telemetry/opentelemetry-proto (trace/v1/trace.proto, logs/v1/logs.proto).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http._common import _is_request_too_large
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

from app.outage import Outage

_log = logging.getLogger(__name__)

Scrub = Callable[[str, Any], Any]
# resource id -> (resource, scope id -> (scope, encoded items)): the SDK's grouping, by identity
_Groups = dict[int, tuple[Resource, dict[int, tuple[Any, list[bytes]]]]]

_DOUBLE = struct.Struct("<d").pack
_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
# SpanFlags: the span says whether its parent is remote (bit 8) and, if so, bit 9.
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
# Encoded attribute pairs kept for reuse; values longer than this (stack traces, long
# messages) are encoded each time so that the cache stays small (<= ~2 MB).
_PAIR_CACHE_SIZE = 4096
_CACHED_STR_LEN = 256


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field; ``tag`` is the encoded key (field number << 3 | 2)."""
    size = len(payload)
    return tag + (bytes((size,)) if size < 0x80 else _varint(size)) + payload


def _text(tag: bytes, text: str) -> bytes:
    return _field(tag, text.encode("utf-8", "surrogatepass"))


def _any_value(value: Any) -> bytes:
    """AnyValue: string 1, bool 2, int 3, double 4, array 5, kvlist 6, bytes 7."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _text(b"\x0a", value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"{value} does not fit in int64")
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        pairs = b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items())
        return _field(b"\x32", pairs)
    raise TypeError(f"invalid attribute type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    return _text(b"\x0a", key) + _field(b"\x12", _any_value(value))


class _Encoder:
    """Encodes batches; one per exporter (its pair cache is used by the exporter thread only)."""

    def __init__(self, scrub: Scrub | None = None) -> None:
        self._scrub = scrub
        self._pairs: dict[tuple[bytes, str, type, Any], bytes] = {}

    # --- attributes

    def _pair(self, tag: bytes, key: str, value: Any) -> bytes:
        cacheable = type(value) in (int, float, bool) or (
            type(value) is str and len(value) <= _CACHED_STR_LEN
        )
        if cacheable:
            cache_key = (tag, key, type(value), value)
            cached = self._pairs.get(cache_key)
            if cached is not None:
                return cached
        if self._scrub is not None:
            value = self._scrub(key, value)
        encoded = _field(tag, _key_value(key, value))
        if cacheable:
            if len(self._pairs) >= _PAIR_CACHE_SIZE:
                self._pairs.clear()
            self._pairs[cache_key] = encoded
        return encoded

    def _attributes(self, tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
        if not attributes:
            return b""
        parts = []
        for key, value in attributes.items():
            try:
                parts.append(self._pair(tag, key, value))
            except (TypeError, ValueError) as error:  # the SDK drops such an attribute too
                _log.warning("attribute %s not exported: %s", key, error)
        return b"".join(parts)

    def _resource(self, resource: Resource) -> bytes:
        return _field(b"\x0a", self._attributes(b"\x0a", resource.attributes))

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        """InstrumentationScope: name 1, version 2, attributes 3 (always present, as the SDK
        writes it, empty when unknown)."""
        if scope is None:
            return b"\x0a\x00"
        body = _text(b"\x0a", scope.name) if scope.name else b""
        if scope.version:
            body += _text(b"\x12", scope.version)
        body += self._attributes(b"\x1a", scope.attributes)
        return _field(b"\x0a", body)

    # --- spans

    def spans(self, spans: Sequence[ReadableSpan]) -> bytes:
        """ExportTraceServiceRequest: resource_spans 1 > (resource 1, scope_spans 2 >
        (scope 1, spans 2, schema_url 3), schema_url 3)."""
        groups: _Groups = {}
        for span in spans:
            resource, scope = span.resource, span.instrumentation_scope or None
            by_scope = groups.setdefault(id(resource), (resource, {}))[1]
            by_scope.setdefault(id(scope), (scope, []))[1].append(_field(b"\x12", self._span(span)))
        return self._wrap(groups)

    def _span(self, span: ReadableSpan) -> bytes:
        """Span: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6,
        start 7, end 8, attributes 9, dropped attributes 10, events 11, dropped events 12,
        links 13, dropped links 14, status 15, flags 16."""
        context = span.get_span_context()
        assert context is not None  # the SDK's spans always have one
        parts = [
            b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
            b"\x12\x08" + context.span_id.to_bytes(8, "big"),
        ]
        if context.trace_state:
            parts.append(_text(b"\x1a", _trace_state(context)))
        parent = span.parent
        if parent is not None:
            parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        parts.append(_text(b"\x2a", span.name))
        parts.append(b"\x30" + _varint(span.kind.value + 1))  # OTLP counts from UNSPECIFIED=0
        if span.start_time:
            parts.append(b"\x39" + _FIXED64(span.start_time))
        if span.end_time:
            parts.append(b"\x41" + _FIXED64(span.end_time))
        parts.append(self._attributes(b"\x4a", span.attributes))
        if span.dropped_attributes:
            parts.append(b"\x50" + _varint(span.dropped_attributes))
        for event in span.events:
            body = b"\x09" + _FIXED64(event.timestamp) + _text(b"\x12", event.name)
            body += self._attributes(b"\x1a", event.attributes)
            if event.dropped_attributes:
                body += b"\x20" + _varint(event.dropped_attributes)
            parts.append(_field(b"\x5a", body))
        if span.dropped_events:
            parts.append(b"\x60" + _varint(span.dropped_events))
        for link in span.links:
            linked = link.context
            body = b"\x0a\x10" + linked.trace_id.to_bytes(16, "big")
            body += b"\x12\x08" + linked.span_id.to_bytes(8, "big")
            body += self._attributes(b"\x22", link.attributes)
            if link.dropped_attributes:
                body += b"\x28" + _varint(link.dropped_attributes)
            body += b"\x35" + _FIXED32(_flags(linked))
            parts.append(_field(b"\x6a", body))
        if span.dropped_links:
            parts.append(b"\x70" + _varint(span.dropped_links))
        status = b""
        if span.status.description:
            status += _text(b"\x12", span.status.description)
        if span.status.status_code.value:
            status += b"\x18" + _varint(span.status.status_code.value)
        parts.append(_field(b"\x7a", status))
        parts.append(b"\x85\x01" + _FIXED32(_flags(parent)))
        return b"".join(parts)

    # --- logs

    def logs(self, records: Sequence[ReadableLogRecord]) -> bytes:
        """ExportLogsServiceRequest: the same nesting as spans, with log records."""
        groups: _Groups = {}
        for record in records:
            resource, scope = record.resource, record.instrumentation_scope or None
            by_scope = groups.setdefault(id(resource), (resource, {}))[1]
            encoded = _field(b"\x12", self._log(record))
            by_scope.setdefault(id(scope), (scope, []))[1].append(encoded)
        return self._wrap(groups)

    def _log(self, readable: ReadableLogRecord) -> bytes:
        """LogRecord: time 1, observed time 11, severity number 2, severity text 3, body 5,
        attributes 6, dropped attributes 7, flags 8, trace_id 9, span_id 10, event name 12."""
        record = readable.log_record
        parts = []
        if record.timestamp:
            parts.append(b"\x09" + _FIXED64(record.timestamp))
        severity = getattr(record.severity_number, "value", None)
        if severity:
            parts.append(b"\x10" + _varint(severity))
        if record.severity_text:
            parts.append(_text(b"\x1a", record.severity_text))
        parts.append(_field(b"\x2a", _any_value(record.body)))
        parts.append(self._attributes(b"\x32", record.attributes))
        if readable.dropped_attributes:
            parts.append(b"\x38" + _varint(readable.dropped_attributes))
        if record.trace_flags:
            parts.append(b"\x45" + _FIXED32(int(record.trace_flags)))
        if record.trace_id:
            parts.append(b"\x4a\x10" + record.trace_id.to_bytes(16, "big"))
        if record.span_id:
            parts.append(b"\x52\x08" + record.span_id.to_bytes(8, "big"))
        if record.observed_timestamp:
            parts.append(b"\x59" + _FIXED64(record.observed_timestamp))
        if record.event_name:
            parts.append(_text(b"\x62", record.event_name))
        return b"".join(parts)

    def _wrap(self, groups: _Groups) -> bytes:
        out = []
        for resource, by_scope in groups.values():
            body = self._resource(resource)
            for scope, items in by_scope.values():
                scoped = self._scope(scope) + b"".join(items)
                if scope is not None and scope.schema_url:
                    scoped += _text(b"\x1a", scope.schema_url)
                body += _field(b"\x12", scoped)
            if resource.schema_url:
                body += _text(b"\x1a", resource.schema_url)
            out.append(_field(b"\x0a", body))
        return b"".join(out)


def _trace_state(context: SpanContext) -> str:
    return ",".join(f"{key}={value}" for key, value in context.trace_state.items())


def _flags(context: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | (_IS_REMOTE if context is not None and context.is_remote else 0)


def encode_spans(spans: Sequence[ReadableSpan], scrub: Scrub | None = None) -> bytes:
    """One ExportTraceServiceRequest, serialised (``scrub(key, value)`` masks attributes)."""
    return _Encoder(scrub).spans(spans)


def encode_logs(records: Sequence[ReadableLogRecord]) -> bytes:
    """One ExportLogsServiceRequest, serialised."""
    return _Encoder().logs(records)


class SpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter with this module's encoder; ``scrub`` is applied to
    every attribute value on the exporter thread, off the request path. ``outage`` is told
    whether each batch was delivered."""

    def __init__(
        self,
        *args: Any,
        scrub: Scrub | None = None,
        outage: Outage | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = _Encoder(scrub)
        self._outage = outage

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        count = len(spans)
        data = _encode(self, count, self._encoder.spans, spans)
        del spans  # before sending: see _send
        ok = data is not None and _send(self, count, data)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE


class LogExporter(OTLPLogExporter):
    """The SDK's OTLP/HTTP log exporter with this module's encoder; ``outage`` is told
    whether each batch was delivered."""

    def __init__(self, *args: Any, outage: Outage | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = _Encoder()
        self._outage = outage

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        count = len(batch)
        data = _encode(self, count, self._encoder.logs, batch)
        del batch  # before sending: see _send
        ok = data is not None and _send(self, count, data)
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE


# The SDK exporters' own ``export`` (opentelemetry-exporter-otlp-proto-http 1.45) in two steps,
# with the encoding swapped: same size limit, HTTP client and self-metrics.


def _encode(exporter: Any, count: int, encode: Callable[[Any], bytes], batch: Any) -> bytes | None:
    if exporter._shutdown:
        _log.warning("exporter already shut down, ignoring batch")
        return None
    try:
        data = encode(batch)
    except Exception as error:  # an encoding bug must cost one batch, not the thread
        _log.error("failed to encode an OTLP batch: %s", error)
        with exporter._metrics.export_operation(count) as result:
            result.error = error
        return None
    if _is_request_too_large(data, exporter._max_request_size):
        _log.warning("dropping an OTLP batch of %d bytes: over max_request_size", len(data))
        with exporter._metrics.export_operation(count) as result:
            result.error = ValueError("request too large")
        return None
    return data


def _send(exporter: Any, count: int, data: bytes) -> bool:
    """Sends an encoded batch, with the SDK client's retries.

    No frame on the way here may still hold the batch. Each failed attempt leaves reference
    cycles in the HTTP stack (an exception whose traceback holds the frame that holds the
    exception), and a frame keeps its callers' frames alive: those cycles live through the
    retries' back-off, end up in the oldest generation, and wait for a full collection. While
    a backend refused connections, 60 s of load left about 14 batches (7,000 spans and log
    records) held that way, on top of the full queues.
    """
    outage: Outage | None = exporter._outage
    with exporter._metrics.export_operation(count) as result:
        sent = exporter._client.export(data)
        if not sent.success:
            # On an error status the SDK's client returns no error, and an export without one
            # is counted as exported: the batch's loss would go uncounted.
            result.error = sent.error or BackendError(sent.status_code)
            if sent.status_code is not None:
                result.error_attrs = {"http.response.status_code": sent.status_code}
    if outage is not None:
        if sent.success:
            outage.delivered()
        elif isinstance(result.error, BackendError):
            outage.failed(str(result.error))
        else:
            outage.failed(type(result.error).__name__)
    return bool(sent.success)


class BackendError(Exception):
    """An OTLP backend answered with an error status, or the export was abandoned."""

    def __init__(self, status: int | None) -> None:
        super().__init__(f"HTTP {status}" if status else "export abandoned")
