"""One trace across both sample services, each started with its own start command.

The FastAPI service (``python -m app``) calls the Node API monitor (``npm start``) on /chain, and
the monitor probes the FastAPI service's /hello. Both export OTLP to one shared receiver, so the
spans of both services can be matched by trace id and parent span id: the test fails if either
side does not send ``traceparent`` or does not continue it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from receivers import OtlpReceiver, SentryReceiver, Span, wait_for
from services import Service, fastapi_app, free_port, node_api, telemetry_env

SERVER, CLIENT = 2, 3  # OTLP SpanKind
PROBE_PATH = "/hello?name=monitor"


@dataclass
class World:
    app: Service
    node: Service
    otlp: OtlpReceiver


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    app_port = free_port()
    app_url = f"http://127.0.0.1:{app_port}"
    with (
        OtlpReceiver() as otlp,
        SentryReceiver() as sentry,
        # The monitor starts first (the FastAPI service needs its URL); its probes of /hello fail
        # until the FastAPI service is up, then succeed.
        node_api(
            telemetry_env(
                "api",
                otlp,
                sentry,
                MONITOR_TARGETS=f"{app_url}{PROBE_PATH}",
                MONITOR_INTERVAL_MS="300",
            )
        ) as node,
        fastapi_app(
            telemetry_env("fastapi-app", otlp, DOWNSTREAM_URL=node.url), port=app_port
        ) as app,
    ):
        yield World(app, node, otlp)


def _span(otlp: OtlpReceiver, predicate: Callable[[Span], bool], message: str) -> Span:
    """The first exported span matching ``predicate``, waiting for the exporters' batches."""
    return wait_for(lambda: [s for s in otlp.spans() if predicate(s)], message=message)[0]


def _parent(otlp: OtlpReceiver, child: Span, message: str) -> Span:
    return _span(
        otlp,
        lambda s: s.trace_id == child.trace_id and s.span_id == child.parent_span_id,
        message,
    )


def test_chain_produces_spans_of_both_services_under_one_trace(world: World) -> None:
    response = httpx.get(f"{world.app.url}/chain", params={"sku": "SB-1001"}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["inventory"] == {"sku": "SB-1001", "name": "Signal lamp", "in_stock": 12}
    trace_id = body["trace_id"]

    inventory = _span(
        world.otlp,
        lambda s: s.trace_id == trace_id and s.service_name == "api" and s.kind == SERVER,
        f"the Node server span in trace {trace_id}",
    )
    assert inventory.name == "GET /inventory/:sku"
    assert inventory.attributes["http.route"] == "/inventory/:sku"
    assert inventory.attributes["http.response.status_code"] == 200

    # The Node server span's parent is the FastAPI client span of the same trace, whose own
    # root is the FastAPI server span of /chain.
    caller = _parent(world.otlp, inventory, "the FastAPI client span that called /inventory")
    assert caller.service_name == "fastapi-app"
    assert caller.kind == CLIENT
    _span(
        world.otlp,
        lambda s: s.trace_id == trace_id and s.service_name == "fastapi-app" and s.kind == SERVER,
        "the FastAPI /chain server span",
    )

    # Both services' logs of this request carry the same trace id.
    def logging_services() -> set[str]:
        names = {r.service_name for r in world.otlp.log_records() if r.trace_id == trace_id}
        return names if names >= {"api", "fastapi-app"} else set()

    wait_for(logging_services, message="OTLP log records of both services in the chain trace")


def test_chain_passes_the_monitor_404_through_in_the_same_trace(world: World) -> None:
    response = httpx.get(f"{world.app.url}/chain", params={"sku": "SB-9999"}, timeout=10)
    assert response.status_code == 404, response.text

    lookup = _span(
        world.otlp,
        lambda s: (
            s.service_name == "api"
            and s.kind == SERVER
            and s.attributes.get("url.path") == "/inventory/SB-9999"
        ),
        "the Node server span of the 404 lookup",
    )
    assert lookup.attributes["http.response.status_code"] == 404
    caller = _parent(world.otlp, lookup, "the FastAPI caller of the 404 lookup")
    assert caller.service_name == "fastapi-app"
    assert caller.kind == CLIENT


def test_probe_into_fastapi_produces_spans_of_both_services_under_one_trace(
    world: World,
) -> None:
    def probe_traces() -> set[str]:
        return {
            s.trace_id for s in world.otlp.spans() if s.service_name == "api" and s.name == "probe"
        }

    hello = _span(
        world.otlp,
        lambda s: (
            s.service_name == "fastapi-app"
            and s.kind == SERVER
            and s.attributes.get("http.route") == "/hello"
            and s.trace_id in probe_traces()
        ),
        "a FastAPI /hello server span in a probe trace",
    )
    client = _parent(world.otlp, hello, "the monitor's client span that probed /hello")
    assert client.service_name == "api"
    assert client.kind == CLIENT
    probe = _parent(world.otlp, client, "the probe span")
    assert probe.name == "probe"
    assert probe.parent_span_id == ""
    assert probe.attributes["probe.target"] == f"{world.app.url}{PROBE_PATH}"

    # The monitor sees the FastAPI service as up. (Probe exemplars mark failed probes only:
    # examples/api/test/monitor.test.mjs checks them.)
    target = f'target="{world.app.url}{PROBE_PATH}"'

    def scrape() -> str:
        return httpx.get(
            f"{world.node.url}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            timeout=5,
        ).text

    metrics = scrape()
    assert f"probe_success{{{target}}} 1" in metrics
    assert f"probe_http_status{{{target}}} 200" in metrics
