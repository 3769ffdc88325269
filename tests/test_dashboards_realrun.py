"""Real run: every Prometheus query of every dashboard returns data.

Both sample services run as users start them, export through the real OpenTelemetry Collector
(built by `make backends`, the repository's config) to loopback receivers, and take a burst
of traffic (successes, 4xx, 5xx, slow requests, the cross-service /chain call); the Node
monitor probes the FastAPI service, one target deliberately failing. Debian's real Prometheus
(exemplar storage on, 1 s scrapes, the project's rule files) scrapes both, the collector and
itself. Then each
Prometheus panel query and variable query is run with its variables set to "All".

Exempt, because no binary for them can run here: queries reading metrics that only Loki,
Tempo, Grafana or Tempo's metrics-generator expose (signalbox.checks._metrics lists them,
METRICS_GENERATOR explicitly). Annotation queries are not panels and return data only around a
deploy. Everything else must return at least one series.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from collector import collector_env, run_collector
from receivers import OtlpReceiver, SentryReceiver, wait_for
from services import Service, fastapi_app, free_port, node_api, telemetry_env

from prometheus import Prometheus, run_prometheus, scrape_config
from signalbox.checks import _metrics
from signalbox.checks.dashboards import PanelQuery, interpolate, panel_queries
from signalbox.dashboards import build_all

REPO = Path(__file__).resolve().parents[1]

# What Grafana would substitute with every variable at "All" on a 1-minute view.
VALUES = {
    "__rate_interval": "30s",
    "__interval": "2s",
    "__range": "1m",
    "__auto": "30s",
    "service": ".+",
    "route": ".+",
    "target": ".+",
}
JOBS = ("fastapi-app", "api", "otel-collector")


@dataclass
class Run:
    prometheus: Prometheus
    app: Service
    node: Service


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    ports = {
        "prometheus": free_port(),
        "fastapi-app": free_port(),
        "api": free_port(),
        "otel-collector": free_port(),
    }
    app_url = f"http://127.0.0.1:{ports['fastapi-app']}"
    # Prometheus scrapes itself and both services every second and evaluates the project's rules.
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [f"{REPO}/prometheus/rules/*.yml"],
        "scrape_configs": [scrape_config(job, [f"127.0.0.1:{p}"]) for job, p in ports.items()],
    }
    with (
        # Started first: its first scrape (~6 s after start) overlaps the services' start-up.
        run_prometheus(config, port=ports["prometheus"]) as prometheus,
        OtlpReceiver() as backends,
        SentryReceiver() as sentry,
        run_collector(
            collector_env(
                backends.traces_endpoint,
                backends.logs_endpoint,
                TAIL_SAMPLING_DECISION_WAIT="1s",
            ),
            metrics_port=ports["otel-collector"],
        ) as otlp,
        node_api(
            telemetry_env(
                "api",
                otlp,
                FASTAPI_URL=app_url,
                # Healthy, slow and failing targets: /error answers 500, which this monitor
                # does not expect, so the "Failing targets" panel has a row.
                MONITOR_TARGETS=f"{app_url}/health,{app_url}/slow?ms=200,{app_url}/error",
                MONITOR_INTERVAL_MS="500",
            ),
            port=ports["api"],
        ) as node,
        fastapi_app(
            telemetry_env("fastapi-app", otlp, sentry, DOWNSTREAM_URL=node.url),
            port=ports["fastapi-app"],
        ) as app,
    ):
        wait_for(lambda: _scraped(prometheus), timeout=30, interval=0.5, message="first scrapes")
        _traffic(app.url, node.url)
        # A few more scrapes after the burst so every rate() window holds it.
        time.sleep(4)
        yield Run(prometheus, app, node)


@pytest.fixture(scope="module")
def prometheus_queries() -> list[PanelQuery]:
    queries = [q for d in build_all().values() for q in panel_queries(d) if q.lang == "promql"]
    return [q for q in queries if not q.location.startswith("annotation")]


def _scraped(prometheus: Prometheus) -> bool:
    result = prometheus.query("up")
    return {r["metric"]["job"] for r in result if r["value"][1] == "1"} >= {*JOBS, "prometheus"}


def _traffic(app: str, node: str) -> None:
    paths = (
        ["/hello?name=sre"] * 20
        + ["/error"] * 4
        + ["/error?kind=handled"] * 2
        + ["/slow?ms=400"] * 4
        + ["/chain?sku=SB-1001"] * 6
        + ["/chain?sku=SB-9999"] * 2
        + ["/no-such-route"] * 2
        + ["/slow?ms=-1"]
    )
    urls = [app + p for p in paths] + [f"{node}/inventory/SB-100{i}" for i in range(1, 6)]
    urls += [f"{node}/inventory/bad!sku", f"{node}/inventory/SB-0000"]

    def get(url: str) -> int | str:
        try:
            return httpx.get(url, timeout=10).status_code
        except httpx.TransportError as exc:
            return f"{url}: {exc!r}"

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(get, urls))
    assert all(isinstance(s, int) for s in statuses), statuses
    assert {200, 400, 404, 500} <= set(statuses), statuses


def _query_range(prometheus: Prometheus, expr: str) -> list[dict[str, object]]:
    end = time.time()
    response = httpx.get(
        f"{prometheus.url}/api/v1/query_range",
        params={"query": expr, "start": end - 60, "end": end, "step": "2s"},
        timeout=10,
    )
    assert response.status_code == 200, f"{expr}: {response.text}"
    return response.json()["data"]["result"]  # type: ignore[no-any-return]


def _metrics_in(expr: str) -> set[str]:
    return {n for n in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if n in _metrics.KNOWN_METRICS}


def _exempt(query: PanelQuery) -> bool:
    return bool(_metrics_in(query.expr) & _metrics.NOT_RUNNABLE_HERE)


def test_every_prometheus_panel_query_returns_data(
    run: Run, prometheus_queries: list[PanelQuery]
) -> None:
    checked, empty = [], []
    for query in prometheus_queries:
        if _exempt(query):
            continue
        expr = interpolate(query.expr, VALUES)
        if not _query_range(run.prometheus, expr):
            empty.append(f"{query.dashboard} / {query.location}: {expr}")
        checked.append(query)
    assert empty == [], "queries without data:\n" + "\n".join(empty)
    # The exemption is the documented list, not a way out: most queries ran.
    exempt = [q for q in prometheus_queries if _exempt(q)]
    assert len(checked) >= 40, (len(checked), len(exempt))
    assert all(_metrics_in(q.expr) & _metrics.NOT_RUNNABLE_HERE for q in exempt)


def test_the_exempt_queries_are_exactly_the_stack_and_generator_panels(
    prometheus_queries: list[PanelQuery],
) -> None:
    exempt = {(q.dashboard, q.location.split(" [")[0]) for q in prometheus_queries if _exempt(q)}
    assert exempt == {
        ("signalbox-traces", "Span rate (server spans)"),
        ("signalbox-traces", "Span error ratio"),
        ("signalbox-traces", "Span duration p95"),
        ("signalbox-traces", "Calls between services"),
        ("signalbox-stack-health", "Loki ingestion"),
        ("signalbox-stack-health", "Loki failures"),
        ("signalbox-stack-health", "Tempo ingestion"),
        ("signalbox-stack-health", "Tempo failures"),
        ("signalbox-stack-health", "Grafana HTTP errors"),
    }


def test_latency_exemplars_carry_trace_ids(run: Run) -> None:
    overview = build_all()["Services/service-overview.json"]
    latency = next(p for p in overview["panels"] if p["title"].startswith("Latency"))
    expr = interpolate(latency["targets"][1]["expr"], VALUES)
    end = time.time()
    exemplars = run.prometheus.api("query_exemplars", query=expr, start=end - 120, end=end)
    trace_ids = {e["labels"].get("trace_id") for series in exemplars for e in series["exemplars"]}
    assert trace_ids and all(re.fullmatch(r"[0-9a-f]{32}", t or "") for t in trace_ids)


def test_the_metric_catalog_matches_what_runs(run: Run) -> None:
    """The names the metric check accepts for the services and Prometheus really exist."""
    collector_names = _names(run.prometheus, "otel-collector")
    # Failure counters appear at the first failure (tests/test_otel_collector.py makes one).
    failures = {n for n in _metrics.OTEL_COLLECTOR if "send_failed" in n}
    assert _metrics.OTEL_COLLECTOR - failures <= collector_names, sorted(
        _metrics.OTEL_COLLECTOR - failures - collector_names
    )
    for job in ("fastapi-app", "api"):
        names = _names(run.prometheus, job)
        expected = set(_metrics.SERVICES_COMMON)
        if job == "api":
            expected |= _metrics.SERVICES_API_ONLY
        assert expected <= names, (job, sorted(expected - names))
    prometheus_names = _names(run.prometheus, "prometheus")
    expected = _metrics.PROMETHEUS_SELF - _metrics.PROMETHEUS_SELF_WITH_ALERTMANAGER
    assert expected <= prometheus_names, sorted(expected - prometheus_names)


def _names(prometheus: Prometheus, job: str) -> set[str]:
    return set(prometheus.api("label/__name__/values", **{"match[]": f'{{job="{job}"}}'}))
