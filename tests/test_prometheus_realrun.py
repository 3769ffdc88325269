"""Real run: the project's Prometheus start-up against both real sample services.

The image's entrypoint (prometheus/entrypoint.sh) renders prometheus/prometheus.yml for
loopback targets and starts Debian's Prometheus 2.42 (/usr/bin/prometheus) with exactly the
flags the image passes to Prometheus 3.x: every one of them exists with the same meaning in
both versions, so nothing is swapped for the test (docs/stack.md, "Prometheus flags"). Only
paths and the listen address are overridden, through the entrypoint's own variables. Loki,
Tempo and Grafana have no binary on this machine: their jobs are rendered empty.

Then: every scrape target is up (OpenMetrics negotiated by default), the services' request
histograms carry trace_id exemplars that Prometheus stores and returns, and the remote-write
receiver (used by Tempo's metrics-generator) accepts a real snappy-compressed protobuf
WriteRequest whose sample is then queryable.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cramjam
import httpx
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from receivers import OtlpReceiver, wait_for
from services import FASTAPI_DIR, NODE_DIR, fastapi_app, free_port, node_api, telemetry_env

from prometheus import Prometheus, start_prometheus, wait_for_scrapes

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = REPO / "prometheus" / "entrypoint.sh"
PROMETHEUS_BIN = "/usr/bin/prometheus"
JOBS = ("prometheus", "fastapi-app", "api")

pytestmark = pytest.mark.timeout(120)


def test_sample_services_exist() -> None:
    """The run below starts them the way users do; fail clearly if one is missing."""
    assert (FASTAPI_DIR / "app" / "__main__.py").is_file()
    assert (NODE_DIR / "package.json").is_file()
    assert (NODE_DIR / "node_modules").is_dir(), "run `make setup-node` (npm ci in examples/api)"
    assert shutil.which(PROMETHEUS_BIN), "run scripts/install-system-deps.sh"


@contextlib.contextmanager
def _project_prometheus(targets: dict[str, str]) -> Iterator[Prometheus]:
    with tempfile.TemporaryDirectory(
        prefix="signalbox-realrun-", ignore_cleanup_errors=True
    ) as tmp:
        workdir = Path(tmp)
        # The image keeps rules next to the config (/etc/prometheus/rules); mirror that layout.
        (workdir / "rules").symlink_to(REPO / "prometheus" / "rules", target_is_directory=True)
        port = free_port()
        env = {
            "PATH": os.environ["PATH"],
            "PROMETHEUS_BIN": PROMETHEUS_BIN,
            "PROMETHEUS_TEMPLATE": str(REPO / "prometheus" / "prometheus.yml"),
            "PROMETHEUS_CONFIG": str(workdir / "prometheus.yml"),
            "PROMETHEUS_DATA_DIR": str(workdir / "data"),
            "PROMETHEUS_LISTEN_ADDRESS": f"127.0.0.1:{port}",
            "PROMETHEUS_SELF_TARGETS": f"127.0.0.1:{port}",
            "PROMETHEUS_SCRAPE_INTERVAL": "1s",
            "PROMETHEUS_EVALUATION_INTERVAL": "1s",
            "LOKI_TARGETS": "",
            "TEMPO_TARGETS": "",
            "GRAFANA_TARGETS": "",
            "OTEL_COLLECTOR_TARGETS": "",
            **targets,
        }
        with start_prometheus(["sh", str(ENTRYPOINT)], port, workdir, env=env) as server:
            yield server


def test_prometheus_scrapes_both_services_with_exemplars_and_accepts_remote_write() -> None:
    fastapi_port, api_port = free_port(), free_port()
    with (
        OtlpReceiver() as otlp,
        node_api(
            telemetry_env("api", otlp, FASTAPI_URL=f"http://127.0.0.1:{fastapi_port}"),
            port=api_port,
        ) as api,
        fastapi_app(
            telemetry_env("fastapi-app", otlp, DOWNSTREAM_URL=f"http://127.0.0.1:{api_port}"),
            port=fastapi_port,
        ) as fastapi,
        _project_prometheus(
            {
                "FASTAPI_APP_TARGETS": f"127.0.0.1:{fastapi_port}",
                "API_TARGETS": f"127.0.0.1:{api_port}",
            }
        ) as prometheus,
    ):
        # Traffic through both services, including the cross-service call and failures.
        for _ in range(5):
            assert httpx.get(f"{fastapi.url}/hello", params={"name": "ada"}).status_code == 200
            chain = httpx.get(f"{fastapi.url}/chain", params={"sku": "SB-1001"}, timeout=10)
            assert chain.status_code == 200, chain.text
            assert httpx.get(f"{api.url}/inventory/SB-1002").status_code == 200
            assert httpx.get(f"{fastapi.url}/error", params={"kind": "handled"}).status_code == 500
            assert httpx.get(f"{api.url}/error", params={"kind": "handled"}).status_code == 500

        wait_for_scrapes(prometheus, JOBS, timeout=40)
        targets = {t["labels"]["job"]: t for t in prometheus.targets()}
        assert set(targets) == set(JOBS), targets
        for job, target in targets.items():
            assert target["health"] == "up", (job, target.get("lastError"))
        # The `service` label Grafana's trace-to-metrics links filter on.
        assert targets["fastapi-app"]["labels"]["service"] == "fastapi-app"
        assert targets["api"]["labels"]["service"] == "api"

        for job in ("fastapi-app", "api"):
            expr = f'http_server_request_duration_seconds_bucket{{job="{job}"}}'
            trace_ids = wait_for(
                lambda expr=expr: prometheus.exemplar_trace_ids(expr) - {""},
                timeout=30,
                message=f"trace_id exemplars from {job}",
            )
            assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids), trace_ids
            # The exemplar ids are the ids of real exported traces, of failed requests only:
            # the collector's tail sampling keeps every such trace.
            exported = {span.trace_id for span in otlp.spans()}
            assert trace_ids & exported, (job, trace_ids, len(exported))
            successes = (
                f'http_server_request_duration_seconds_bucket{{job="{job}",status_class="2xx"}}'
            )
            assert prometheus.exemplar_trace_ids(successes) - {""} == set(), job

        _assert_remote_write_accepted(prometheus)


def _assert_remote_write_accepted(prometheus: Prometheus) -> None:
    now_ms = int(time.time() * 1000)
    body = _write_request(
        "signalbox_realrun_remote_write_total",
        {"source": "tempo-metrics-generator-stand-in"},
        value=42.0,
        timestamp_ms=now_ms,
    )
    response = httpx.post(
        f"{prometheus.url}/api/v1/write",
        content=cramjam.snappy.compress_raw(body).read(),  # raw block format, per the spec
        headers={
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        },
        timeout=10,
    )
    assert response.status_code == 204, (response.status_code, response.text)
    result = wait_for(
        lambda: prometheus.query('signalbox_realrun_remote_write_total{source!=""}'),
        timeout=10,
        message="the remote-written sample",
    )
    assert result[0]["metric"]["source"] == "tempo-metrics-generator-stand-in"
    assert float(result[0]["value"][1]) == 42.0


def _write_request(name: str, labels: dict[str, str], value: float, timestamp_ms: int) -> bytes:
    """A prometheus.WriteRequest (remote write 1.0), built from its message definitions.

    Field numbers from prometheus/prompb/remote.proto and types.proto:
    WriteRequest{1: repeated TimeSeries}, TimeSeries{1: repeated Label, 2: repeated Sample},
    Label{1: name, 2: value}, Sample{1: double value, 2: int64 timestamp}.
    """
    classes = _remote_write_classes()
    request = classes["WriteRequest"]()
    series = request.timeseries.add()
    for key, val in sorted({"__name__": name, **labels}.items()):
        label = series.labels.add()
        label.name, label.value = key, val
    sample = series.samples.add()
    sample.value, sample.timestamp = value, timestamp_ms
    return bytes(request.SerializeToString())


def _remote_write_classes() -> dict[str, type]:
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="signalbox_test_remote.proto", package="prometheus", syntax="proto3"
    )

    def message(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        proto = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            added = proto.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                added.type_name = type_name

    optional, repeated = field.LABEL_OPTIONAL, field.LABEL_REPEATED
    message(
        "Label",
        [
            ("name", 1, field.TYPE_STRING, optional, ""),
            ("value", 2, field.TYPE_STRING, optional, ""),
        ],
    )
    message(
        "Sample",
        [
            ("value", 1, field.TYPE_DOUBLE, optional, ""),
            ("timestamp", 2, field.TYPE_INT64, optional, ""),
        ],
    )
    message(
        "TimeSeries",
        [
            ("labels", 1, field.TYPE_MESSAGE, repeated, ".prometheus.Label"),
            ("samples", 2, field.TYPE_MESSAGE, repeated, ".prometheus.Sample"),
        ],
    )
    message(
        "WriteRequest",
        [("timeseries", 1, field.TYPE_MESSAGE, repeated, ".prometheus.TimeSeries")],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{name}"))
        for name in ("WriteRequest", "TimeSeries", "Label", "Sample")
    }
