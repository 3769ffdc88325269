"""``signalbox verify`` end to end: real services, real Prometheus, real SDK wire formats.

The FastAPI service (``python -m app``) calls the Node service (``npm start``) on /chain; both
export OTLP to the shared ``OtlpReceiver`` and the FastAPI service sends Sentry envelopes to the
``SentryReceiver``. A real Prometheus (Debian's, exemplar storage on, 1 s scrapes) scrapes both.
verify reads exemplars from that Prometheus, directly and through a Grafana datasource proxy;
its Tempo, Loki and Sentry legs read loopback servers that answer, in each product's documented
shape, with what the receivers actually received (tests/fixtures/api/fakes.py). So the test
fails if a service does not continue the probe's traceparent, logs without trace ids, scrapes
without exemplars, or if verify asks any backend the wrong question.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from receivers import OtlpReceiver, SentryReceiver
from services import Service, fastapi_app, free_port, node_api, telemetry_env

from prometheus import run_prometheus, scrape_config
from signalbox.cli import main

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "api"))
from fakes import PROJECT_IDS, FakeStack, ReceiverTelemetry

ENVIRONMENT = "verify-e2e"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test passes: a developer's GRAFANA_URL or SENTRY_* must not leak in."""
    for name in (
        "SIGNALBOX_SERVICE_URL", "GRAFANA_URL", "GRAFANA_TOKEN", "TEMPO_URL", "LOKI_URL",
        "PROMETHEUS_URL", "SENTRY_URL", "SENTRY_ORG", "SENTRY_AUTH_TOKEN", "SENTRY_PROJECT",
        "SENTRY_ENVIRONMENT", "SENTRY_DSN", "SENTRY_DSN_FASTAPI",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


@dataclass
class World:
    app: Service
    node: Service
    prometheus_url: str
    fakes: FakeStack


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    app_port, node_port = free_port(), free_port()
    with (
        OtlpReceiver() as otlp,
        SentryReceiver(project_id=int(PROJECT_IDS["fastapi-app"])) as sentry,
        node_api(
            telemetry_env(
                "api",
                otlp,
                FASTAPI_URL=f"http://127.0.0.1:{app_port}",
                MONITOR_INTERVAL_MS="86400000",  # keep the monitor's probes out of the way
            ),
            port=node_port,
        ) as node,
        fastapi_app(
            telemetry_env(
                "fastapi-app",
                otlp,
                sentry,
                SENTRY_ENVIRONMENT=ENVIRONMENT,
                DOWNSTREAM_URL=node.url,
            ),
            port=app_port,
        ) as app,
        run_prometheus(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    scrape_config(job, [f"127.0.0.1:{port}"])
                    for job, port in {"fastapi-app": app.port, "api": node.port}.items()
                ],
            }
        ) as prometheus,
        FakeStack(
            ReceiverTelemetry(otlp, sentry, PROJECT_IDS["fastapi-app"]), prometheus.url
        ) as fakes,
    ):
        yield World(app, node, prometheus.url, fakes)


def _run(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, dict[str, object]]]:
    code = main(["verify", *args, "--timeout", "30", "--poll-interval", "0.5", "--output", "json"])
    document = json.loads(capsys.readouterr().out)
    return code, {f["check"]: f for f in document["findings"] if f["check"] != "grafana datasource"}


LEGS = (
    "tempo /error",
    "tempo /chain",
    "loki /error",
    "loki /chain",
    "prometheus /error",
    "sentry /error",
)


def test_real_services_and_prometheus_show_the_probe_trace_everywhere(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    fakes = world.fakes
    code, findings = _run(
        capsys,
        "--service-url", world.app.url,
        "--prometheus-url", world.prometheus_url,
        "--tempo-url", fakes.tempo.url,
        "--loki-url", fakes.loki.url,
        "--sentry-url", fakes.sentry.url,
        "--sentry-org", fakes.sentry.org,
        "--sentry-token", fakes.sentry.token,
        "--sentry-project", "fastapi-app",
        "--sentry-environment", ENVIRONMENT,
        "--only", "tempo,loki,prometheus,sentry",  # no Grafana here
    )  # fmt: skip

    failed = {c: f["message"] for c, f in findings.items() if f["status"] != "passed"}
    assert code == 0, failed
    assert fakes.problems == []
    error_exemplar = findings["prometheus /error"]["details"]
    assert any('job="fastapi-app"' in s and 'route="/error"' in s for s in error_exemplar["series"])  # type: ignore[index, union-attr]
    # Exemplars mark failed requests only (the collector keeps every failed trace): the /chain
    # request, a success, is not looked for in Prometheus.
    assert "prometheus /chain" not in findings
    assert findings["prometheus /error"]["details"]["via"] == "direct"  # type: ignore[index]
    spans = findings["tempo /chain"]["details"]["spans_by_service"]  # type: ignore[index]
    assert set(spans) == {"fastapi-app", "api"}  # type: ignore[arg-type]
    lines = findings["loki /chain"]["details"]["lines_by_service"]  # type: ignore[index]
    assert lines["fastapi-app"] > 0 and lines["api"] > 0  # type: ignore[index]
    assert findings["sentry /error"]["details"]["environment"] == ENVIRONMENT  # type: ignore[index]


def test_prometheus_through_grafanas_datasource_proxy(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes = world.fakes
    monkeypatch.setenv("GRAFANA_TOKEN", fakes.grafana.token)
    code, findings = _run(
        capsys,
        "--service-url", world.app.url,
        "--grafana-url", fakes.grafana.url,
        "--sentry-project", PROJECT_IDS["fastapi-app"],
        "--sentry-environment", ENVIRONMENT,
        "--no-chain",
    )  # fmt: skip

    failed = {c: f["message"] for c, f in findings.items() if f["status"] != "passed"}
    assert code == 0, failed
    assert fakes.problems == []
    assert findings["prometheus /error"]["details"]["via"] == "grafana"  # type: ignore[index]
    assert findings["sentry /error"]["details"]["via"] == "grafana"  # type: ignore[index]
