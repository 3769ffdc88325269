"""Prometheus: was an exemplar carrying this trace id scraped?

API: ``GET /api/v1/query_exemplars?query=<selector>&start=<s>&end=<s>``, answering
``{"status": "success", "data": [{"seriesLabels": {...}, "exemplars": [{"labels": {...},
"value": "...", "timestamp": <s>}]}]}``. Needs ``--enable-feature=exemplar-storage``.
Reference: https://prometheus.io/docs/prometheus/latest/querying/api/#querying-exemplars
"""

from __future__ import annotations

from typing import Any

import httpx

from signalbox.backends._http import BackendError, Endpoint, Lookup, request_json

QUERY_EXEMPLARS = "/api/v1/query_exemplars"
# Applications use ``trace_id`` (OpenMetrics/OTel convention); Tempo's metrics-generator
# defaults to ``traceID``. Either proves the join.
TRACE_LABELS = ("trace_id", "traceID", "traceId")
DEFAULT_SELECTOR = '{__name__=~"http_server_.+"}'


async def find_exemplar(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    trace_id: str,
    *,
    selector: str,
    start: float,
    end: float,
) -> Lookup:
    body = await request_json(
        client,
        endpoint,
        QUERY_EXEMPLARS,
        params={"query": selector, "start": f"{start:.3f}", "end": f"{end:.3f}"},
    )
    if not isinstance(body, dict) or body.get("status") != "success":
        raise BackendError(
            f"Prometheus answered an unexpected document: {str(body)[:120]}", fatal=True
        )
    matches = [
        series.get("seriesLabels", {})
        for series in body.get("data") or []
        for exemplar in series.get("exemplars") or []
        if _carries(exemplar.get("labels", {}), trace_id)
    ]
    if not matches:
        return Lookup(False, "no exemplar with this trace id yet")
    series = [_describe(labels) for labels in matches]
    return Lookup(
        True,
        f"exemplar on {series[0]}" + (f" (+{len(series) - 1} more)" if len(series) > 1 else ""),
        {"series": series},
    )


def _carries(labels: dict[str, Any], trace_id: str) -> bool:
    return any(str(labels.get(name, "")).lower() == trace_id for name in TRACE_LABELS)


def _describe(labels: dict[str, Any]) -> str:
    name = labels.get("__name__", "")
    keep = ("job", "route", "status_class", "le")
    shown = ",".join(f'{k}="{labels[k]}"' for k in keep if k in labels)
    return f"{name}{{{shown}}}"
