"""Real telemetry receivers for tests: they decode the wire formats the SDKs actually send.

- ``OtlpReceiver``: OTLP/HTTP traces and logs, protobuf (Python exporters) or JSON (Node
  exporters), gzip or plain, decoded with ``opentelemetry-proto``.
- ``SentryReceiver``: Sentry envelopes (``/api/<project>/envelope/``), gzip/deflate or plain,
  chunked or not, as sentry-sdk and @sentry/node send them.

Both listen on an ephemeral loopback port in a background thread. ``mode`` makes them misbehave
the way a broken backend does: ``"hang"`` accepts and never answers, ``"error"`` answers 503;
``go_down()`` takes a running receiver away (connections refused from then on).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeVar

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

Mode = Literal["ok", "hang", "error", "down"]
T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, message: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {message or predicate}")
        time.sleep(interval)


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    service_name: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: int
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class LogRecord:
    trace_id: str
    span_id: str
    body: Any
    severity_text: str
    attributes: dict[str, Any]
    service_name: str
    resource: dict[str, Any]


def _any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


def _decode_body(headers: Any, raw: bytes) -> bytes:
    encoding = (headers.get("Content-Encoding") or "").lower()
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "deflate":
        return zlib.decompress(raw)
    return raw


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if (handler.headers.get("Transfer-Encoding") or "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                handler.rfile.readline()
                break
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        raw = b"".join(chunks)
    else:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    return _decode_body(handler.headers, raw)


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
    """Answer the request ``handler`` is serving with a JSON body."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


class _Receiver:
    """A threaded HTTP server on 127.0.0.1 with a request log and a misbehaviour switch."""

    def __init__(self, mode: Mode = "ok") -> None:
        self.mode: Mode = mode
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                if receiver.mode == "down":
                    # Cut off unanswered, as by a backend that went away.
                    self.close_connection = True
                    return
                if receiver.mode == "hang":
                    # Keep the connection open without answering until the test ends.
                    receiver._release.wait(timeout=120)
                    return
                body = _read_body(self)
                with receiver._lock:
                    receiver.requests.append((self.path, dict(self.headers)))
                if receiver.mode == "error":
                    send_json(self, 503, b'{"error":"unavailable"}')
                    return
                status, payload = receiver._handle(self.path, self.headers, body)
                send_json(self, status, payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handle(self, path: str, headers: Any, body: bytes) -> tuple[int, bytes]:
        raise NotImplementedError

    def go_down(self) -> None:
        """The backend goes away while clients use it: new connections are refused, and a
        request on a connection that is already open is cut off unanswered."""
        self.mode = "down"
        self._server.shutdown()
        self._server.socket.close()

    def __enter__(self: T) -> T:
        self._thread.start()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


class OtlpReceiver(_Receiver):
    """OTLP/HTTP ``/v1/traces`` and ``/v1/logs``, also under Loki's ``/otlp`` prefix."""

    def __init__(self, mode: Mode = "ok") -> None:
        super().__init__(mode)
        self._spans: list[Span] = []
        self._logs: list[LogRecord] = []
        self.traces_endpoint = f"{self.url}/v1/traces"
        self.logs_endpoint = f"{self.url}/otlp/v1/logs"

    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def log_records(self) -> list[LogRecord]:
        with self._lock:
            return list(self._logs)

    def _handle(self, path: str, headers: Any, body: bytes) -> tuple[int, bytes]:
        is_json = "json" in (headers.get("Content-Type") or "")
        if path.endswith("/v1/traces"):
            spans = decode_traces(body, is_json)
            with self._lock:
                self._spans.extend(spans)
        elif path.endswith("/v1/logs"):
            logs = ExportLogsServiceRequest()
            _parse(logs, body, is_json)
            records = list(_logs_of(logs))
            with self._lock:
                self._logs.extend(records)
        else:
            return 404, b'{"error":"unknown path"}'
        return 200, b"{}"


def decode_traces(body: bytes, is_json: bool) -> list[Span]:
    traces = ExportTraceServiceRequest()
    _parse(traces, body, is_json)
    return list(_spans_of(traces))


def _parse(message: Any, body: bytes, is_json: bool) -> None:
    if is_json:
        # OTLP/JSON encodes trace and span ids as hex strings, not base64 (OTLP spec,
        # "JSON Protobuf Encoding"); protobuf's JSON parser expects base64, so convert.
        document = json.loads(body)
        json_format.ParseDict(_hex_ids_to_base64(document), message, ignore_unknown_fields=True)
    else:
        message.ParseFromString(body)


_ID_KEYS = {"traceId", "spanId", "parentSpanId"}


def _hex_ids_to_base64(node: Any) -> Any:
    import base64

    if isinstance(node, dict):
        return {
            key: (
                base64.b64encode(bytes.fromhex(value)).decode()
                if key in _ID_KEYS and isinstance(value, str)
                else _hex_ids_to_base64(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def _spans_of(request: ExportTraceServiceRequest) -> Any:
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield Span(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    name=span.name,
                    kind=span.kind,
                    service_name=str(resource.get("service.name", "")),
                    attributes=_attributes(span.attributes),
                    resource=resource,
                    status_code=span.status.code,
                    events=[
                        {"name": e.name, "attributes": _attributes(e.attributes)}
                        for e in span.events
                    ],
                )


def _logs_of(request: ExportLogsServiceRequest) -> Any:
    for resource_logs in request.resource_logs:
        resource = _attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                yield LogRecord(
                    trace_id=record.trace_id.hex(),
                    span_id=record.span_id.hex(),
                    body=_any_value(record.body),
                    severity_text=record.severity_text,
                    attributes=_attributes(record.attributes),
                    service_name=str(resource.get("service.name", "")),
                    resource=resource,
                )


class SentryReceiver(_Receiver):
    """Sentry ingestion endpoint: envelopes (``/api/<project>/envelope/``) and OTLP traces
    (``/api/<project>/integration/otlp/v1/traces``), both as Sentry accepts them."""

    def __init__(self, mode: Mode = "ok", project_id: int = 1) -> None:
        super().__init__(mode)
        self.dsn = f"http://publickey@127.0.0.1:{self.port}/{project_id}"
        self._events: list[dict[str, Any]] = []
        self._items: list[tuple[dict[str, Any], bytes]] = []
        self._spans: list[Span] = []

    def spans(self) -> list[Span]:
        """Spans received on Sentry's OTLP endpoint (performance data)."""
        with self._lock:
            return list(self._spans)

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def items(self) -> list[tuple[dict[str, Any], bytes]]:
        """Every envelope item as (item header, payload): events, transactions, logs, reports."""
        with self._lock:
            return list(self._items)

    def _handle(self, path: str, headers: Any, body: bytes) -> tuple[int, bytes]:
        path = path.split("?", 1)[0]  # @sentry/node sends the key as ?sentry_key=...
        if path.rstrip("/").endswith("/integration/otlp/v1/traces"):
            if "sentry_key=" not in (headers.get("X-Sentry-Auth") or ""):
                return 401, b'{"detail":"missing authentication"}'
            spans = decode_traces(body, "json" in (headers.get("Content-Type") or ""))
            with self._lock:
                self._spans.extend(spans)
            return 200, b"{}"
        if not path.rstrip("/").endswith("/envelope"):
            return 404, b'{"detail":"unknown path"}'
        items = list(parse_envelope(body))
        with self._lock:
            self._items.extend(items)
            self._events.extend(
                json.loads(payload) for header, payload in items if header.get("type") == "event"
            )
        return 200, b'{"id":"0"}'


def parse_envelope(body: bytes) -> Any:
    """Yield (item header, payload) pairs of an envelope (develop.sentry.dev/sdk/envelopes)."""
    _envelope_header, _, rest = body.partition(b"\n")
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length + 1 :]
        yield header, payload
