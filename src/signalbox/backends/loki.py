"""Loki: did every service log lines carrying this trace id?

OTLP-ingested logs keep ``trace_id`` as structured metadata (not in the line), and
``service.name`` becomes the stream label ``service_name``, so the query is
``{service_name="<svc>"} | trace_id="<id>"`` over ``GET /loki/api/v1/query_range``.
References: https://grafana.com/docs/loki/latest/reference/loki-http-api/#query-logs-within-a-range-of-time
and https://grafana.com/docs/loki/latest/get-started/labels/structured-metadata/#querying-structured-metadata
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from signalbox.backends._http import BackendError, Endpoint, Lookup, request_json

QUERY_RANGE = "/loki/api/v1/query_range"
_LIMIT = 50


def logql(service: str, trace_id: str) -> str:
    # A JSON string literal is a valid LogQL (Go-style) double-quoted string.
    return f"{{service_name={json.dumps(service)}}} | trace_id={json.dumps(trace_id)}"


async def find_logs(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    trace_id: str,
    services: Sequence[str],
    *,
    start_ns: int,
    end_ns: int,
) -> Lookup:
    lines: dict[str, int] = {}
    for service in services:
        body = await request_json(
            client,
            endpoint,
            QUERY_RANGE,
            params={
                "query": logql(service, trace_id),
                "start": str(start_ns),
                "end": str(end_ns),
                "limit": str(_LIMIT),
                "direction": "backward",
            },
        )
        lines[service] = _count_lines(body)
    seen = ", ".join(f"{name} ({count})" for name, count in lines.items() if count)
    missing = [name for name, count in lines.items() if not count]
    details = {"lines_by_service": lines}
    if not seen:
        return Lookup(False, "no log line with this trace id yet", details)
    if missing:
        return Lookup(False, f"lines only from {seen}; none yet from {', '.join(missing)}", details)
    return Lookup(True, f"log lines from {seen}", details)


def _count_lines(body: Any) -> int:
    if not isinstance(body, dict) or body.get("status") != "success":
        raise BackendError(f"Loki answered an unexpected document: {str(body)[:120]}", fatal=True)
    data = body.get("data", {})
    if data.get("resultType") != "streams":
        raise BackendError(
            f"Loki answered resultType {data.get('resultType')!r}, expected 'streams'", fatal=True
        )
    return sum(len(stream.get("values", [])) for stream in data.get("result", []))
