"""Tempo: is the trace stored, with spans from every service that handled the request?

API: ``GET /api/v2/traces/<traceID>`` (Tempo >= 2.6, the query frontend's v2 endpoint), which
answers ``{"trace": {"resourceSpans": [...]}, "metrics": {...}}`` in OTLP/JSON, where span ids
are base64 (gogo/protobuf jsonpb). An unknown id is a 404 (or an empty trace).
Reference: https://grafana.com/docs/tempo/latest/api_docs/#query-v2 and the example response in
https://grafana.com/docs/tempo/latest/api_docs/pushing-spans-with-http/
The v1 shape (``{"batches": [...]}``) is read too, so a proxy that rewrites is no surprise.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx

from signalbox.backends._http import BackendError, Endpoint, Lookup, request_json


def trace_path(trace_id: str) -> str:
    return f"/api/v2/traces/{trace_id}"


async def find_trace(
    client: httpx.AsyncClient, endpoint: Endpoint, trace_id: str, services: Sequence[str]
) -> Lookup:
    body = await request_json(
        client,
        endpoint,
        trace_path(trace_id),
        headers={"Accept": "application/json"},
        none_on_404=True,
    )
    if body is None:
        return Lookup(False, "trace not found yet")
    spans = _spans_by_service(body, trace_id)
    if not spans:
        return Lookup(False, "trace not found yet")
    seen = ", ".join(f"{name} ({count})" for name, count in sorted(spans.items()))
    missing = [s for s in services if s not in spans]
    details = {"spans_by_service": dict(spans)}
    if missing:
        return Lookup(False, f"spans only from {seen}; none yet from {', '.join(missing)}", details)
    return Lookup(True, f"spans from {seen}", details)


def _spans_by_service(body: Any, trace_id: str) -> Counter[str]:
    if not isinstance(body, dict):
        raise BackendError(f"Tempo answered {type(body).__name__}, not a trace object", fatal=True)
    trace = body.get("trace", body)
    resource_spans = (trace or {}).get("resourceSpans", (trace or {}).get("batches", []))
    counts: Counter[str] = Counter()
    for batch in resource_spans or []:
        service = _service_name(batch.get("resource", {}))
        scopes = batch.get("scopeSpans") or batch.get("instrumentationLibrarySpans") or []
        for scope in scopes:
            for span in scope.get("spans", []):
                if _hex_id(span.get("traceId", "")) == trace_id:
                    counts[service] += 1
    return counts


def _service_name(resource: dict[str, Any]) -> str:
    for attribute in resource.get("attributes", []):
        if attribute.get("key") == "service.name":
            return str(attribute.get("value", {}).get("stringValue", "<unnamed>"))
    return "<unnamed>"


def _hex_id(value: str) -> str:
    """Tempo's JSON carries ids as base64 bytes; some proxies and older versions send hex."""
    if len(value) == 32 and all(c in "0123456789abcdefABCDEF" for c in value):
        return value.lower()
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return ""
