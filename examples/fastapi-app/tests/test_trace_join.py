"""One request, one trace id: Sentry event == Tempo span == Loki log records == exemplar."""

from __future__ import annotations

import secrets

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from receivers import OtlpReceiver, SentryReceiver, wait_for
from services import fastapi_app

SPAN_KIND_SERVER = 2


def _exemplar_trace_ids(base_url: str, route: str) -> set[str]:
    text = httpx.get(f"{base_url}/metrics", headers={"Accept": "application/openmetrics-text"}).text
    ids = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("route") == route and sample.exemplar is not None:
                ids.add(sample.exemplar.labels["trace_id"])
    return ids


def _propagation_headers(case: str, trace_id: str, parent_id: str) -> dict[str, str]:
    if case == "traceparent":
        return {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    if case == "sentry-trace":
        return {
            "sentry-trace": f"{trace_id}-{parent_id}-1",
            "baggage": f"sentry-trace_id={trace_id},sentry-environment=test,"
            "sentry-public_key=publickey,sentry-sample_rate=1.0",
        }
    return {}


@pytest.mark.parametrize("case", ["plain", "traceparent", "sentry-trace"])
@pytest.mark.parametrize("kind", ["unhandled", "handled"])
def test_error_shares_one_trace_id_across_all_signals(
    case: str,
    kind: str,
    otlp: OtlpReceiver,
    sentry: SentryReceiver,
    telemetry_env: dict[str, str],
) -> None:
    sent_trace_id, sent_parent_id = secrets.token_hex(16), secrets.token_hex(8)
    headers = _propagation_headers(case, sent_trace_id, sent_parent_id)

    with fastapi_app(telemetry_env) as app:
        response = httpx.get(f"{app.url}/error", params={"kind": kind}, headers=headers)
        assert response.status_code == 500

        event = wait_for(
            lambda: next(
                (
                    e
                    for e in sentry.events()
                    if e.get("exception", {}).get("values", [{}])[-1].get("type")
                    == "DeliberateError"
                ),
                None,
            ),
            message="the DeliberateError event in Sentry",
        )
        trace_id = event["contexts"]["trace"]["trace_id"]
        # The developer who hit /error gets the id to look it up with.
        assert response.json()["trace_id"] == trace_id
        if case != "plain":
            assert trace_id == sent_trace_id, "the incoming trace must be continued"

        server_span = wait_for(
            lambda: next(
                (
                    s
                    for s in otlp.spans()
                    if s.kind == SPAN_KIND_SERVER and s.attributes.get("http.route") == "/error"
                ),
                None,
            ),
            message="the /error server span",
        )
        assert server_span.trace_id == trace_id
        assert server_span.service_name == "fastapi-app"
        if case != "plain":
            assert server_span.parent_span_id == sent_parent_id
        assert event["contexts"]["trace"]["span_id"] == server_span.span_id

        error_logs = wait_for(
            lambda: [
                r
                for r in otlp.log_records()
                if r.trace_id == trace_id and r.severity_text == "ERROR"
            ],
            message="ERROR log records carrying the trace id",
        )
        assert all(r.span_id == server_span.span_id for r in error_logs)
        assert trace_id in _exemplar_trace_ids(app.url, "/error")

        # The same id is visible to whoever reads the event in Sentry.
        assert event["tags"]["trace_id"] == trace_id
        assert event["tags"]["service"] == "fastapi-app"
        assert event["environment"] == "test"
        assert event["release"] == "fastapi-app@test"

        # The JSON log line on stdout carries it too (what `docker logs` shows).
        wait_for(lambda: f'"trace_id": "{trace_id}"' in app.output(), message="the stdout line")


def test_each_failed_request_gets_its_own_trace_id_and_successes_no_exemplar(
    telemetry_env: dict[str, str],
) -> None:
    """Exemplars mark failed requests only: the collector's tail sampling keeps every trace
    with an error, so an exemplar always opens a trace that exists."""
    with fastapi_app(telemetry_env) as app:
        httpx.get(f"{app.url}/error", params={"kind": "handled"})
        first = _exemplar_trace_ids(app.url, "/error")
        httpx.get(f"{app.url}/error", params={"kind": "handled"})
        second = _exemplar_trace_ids(app.url, "/error")
        assert httpx.get(f"{app.url}/hello", params={"name": "one"}).status_code == 200
        successes = _exemplar_trace_ids(app.url, "/hello")
    assert first and second and first != second
    assert successes == set()


def test_health_and_metrics_are_not_traced(
    otlp: OtlpReceiver, telemetry_env: dict[str, str]
) -> None:
    with fastapi_app(telemetry_env) as app:
        for path in ("/health", "/ready", "/metrics"):
            httpx.get(app.url + path)
        httpx.get(f"{app.url}/hello")
        wait_for(
            lambda: any(s.attributes.get("http.route") == "/hello" for s in otlp.spans()),
            message="the /hello span",
        )
    routes = {s.attributes.get("http.route") for s in otlp.spans()}
    assert routes.isdisjoint({"/health", "/ready", "/metrics"})
