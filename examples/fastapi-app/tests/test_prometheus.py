"""A real Prometheus scraping the app stores the exemplar that links a request to its trace."""

from __future__ import annotations

import secrets

import httpx
from receivers import OtlpReceiver, wait_for
from services import fastapi_app

from prometheus import run_prometheus, scrape_config, wait_for_scrapes


def test_prometheus_keeps_the_error_exemplar_with_its_trace_id() -> None:
    trace_id = secrets.token_hex(16)
    # Exemplars are served only when traces are exported: they must lead to a stored trace.
    with OtlpReceiver() as otlp, fastapi_app({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url}) as app:
        config = {
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [scrape_config("fastapi-app", [f"127.0.0.1:{app.port}"])],
        }
        with run_prometheus(config) as prometheus:
            wait_for_scrapes(prometheus, ["fastapi-app"])
            response = httpx.get(
                f"{app.url}/error",
                headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
            )
            assert response.status_code == 500

            expr = 'http_server_requests_total{route="/error"}'
            found = wait_for(
                lambda: trace_id in prometheus.exemplar_trace_ids(expr),
                timeout=20,
                message=f"exemplar with trace_id {trace_id} in Prometheus",
            )
            assert found
            # The series itself is labelled by route template and status class.
            series = prometheus.query('http_server_requests_total{route="/error"}')
            assert series[0]["metric"]["status_class"] == "5xx"
