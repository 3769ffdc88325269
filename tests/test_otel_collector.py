"""The real OpenTelemetry Collector between the real services and the backends.

The collector is the binary built from tools/backends/otelcol (the components and release of the
image), started by otel-collector/entrypoint.sh with the repository's config. Both sample
services send it everything through the one standard variable, OTEL_EXPORTER_OTLP_ENDPOINT.
Tempo, Loki and Sentry's OTLP endpoint cannot run here (README, "What was verified how"), so
loopback receivers that decode OTLP stand in for them, at the URLs the collector exports to.

Statistical bounds: a share p of n independent traces is kept; the tests accept p +/- 4 standard
deviations (sqrt(p(1-p)/n)), so a correct collector fails them by chance less than once in
15,000 runs.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from collector import Collector, CollectorPorts, collector_env, run_collector
from receivers import OtlpReceiver, SentryReceiver, wait_for
from services import Service, fastapi_app, free_port, node_api

from signalbox.checks import otel_collector
from signalbox.report import Status

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "validate" / "otel-collector"
# Short waits so a test does not sit out the production defaults (5 s decision wait).
FAST = {"TAIL_SAMPLING_DECISION_WAIT": "2s"}


def _traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def _within(kept: int, total: int, share: float) -> bool:
    spread = 4 * math.sqrt(share * (1 - share) / total)
    return share - spread <= kept / total <= share + spread


def _service_env(name: str, collector: Collector, sentry: SentryReceiver) -> dict[str, str]:
    return {
        "OTEL_SERVICE_NAME": name,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "SENTRY_DSN": sentry.dsn,
        # Every error becomes an event here (the default budget is 10 a second).
        "SENTRY_MAX_EVENTS_PER_SECOND": "0",
    }


@dataclass
class Bundle:
    collector: Collector
    tempo: OtlpReceiver
    loki: OtlpReceiver
    sentry_fastapi: SentryReceiver
    sentry_api: SentryReceiver
    app: Service
    node: Service

    def traces(self) -> dict[str, set[str]]:
        """Trace id -> the services whose spans reached Tempo."""
        found: dict[str, set[str]] = {}
        for span in self.tempo.spans():
            found.setdefault(span.trace_id, set()).add(span.service_name)
        return found


@pytest.fixture(scope="module")
def bundle() -> Iterator[Bundle]:
    app_port, node_port = free_port(), free_port()
    with (
        OtlpReceiver() as tempo,
        OtlpReceiver() as loki,
        SentryReceiver(project_id=1) as sentry_fastapi,
        SentryReceiver(project_id=2) as sentry_api,
        run_collector(
            collector_env(tempo.traces_endpoint, loki.logs_endpoint, **FAST)
        ) as collector,
        fastapi_app(
            {
                **_service_env("fastapi-app", collector, sentry_fastapi),
                "DOWNSTREAM_URL": f"http://127.0.0.1:{node_port}",
            },
            port=app_port,
        ) as app,
        node_api(
            {
                **_service_env("api", collector, sentry_api),
                "FASTAPI_URL": app.url,
                # Every probe of the FastAPI service's /error is one trace across both
                # services that ends in an error.
                "MONITOR_TARGETS": f"{app.url}/error",
                "MONITOR_INTERVAL_MS": "300",
            },
            port=node_port,
        ) as node,
    ):
        yield Bundle(collector, tempo, loki, sentry_fastapi, sentry_api, app, node)


def test_every_error_keeps_its_whole_trace_and_a_tenth_of_the_rest_is_kept(
    bundle: Bundle,
) -> None:
    plain = 400
    sent: dict[str, str] = {}  # trace id -> what it was
    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(8) as pool:

        def call(url: str, kind: str) -> None:
            trace_id, header = _traceparent()
            client.get(url, headers={"traceparent": header})
            sent[trace_id] = kind

        jobs = [(f"{bundle.app.url}/hello", "plain")] * plain
        jobs += [(f"{bundle.app.url}/error", "error")] * 15
        jobs += [(f"{bundle.node.url}/error", "error")] * 15
        list(pool.map(lambda job: call(*job), jobs))

    # Each service's Sentry events carry the trace id; every one of those traces is in Tempo.
    def error_trace_ids() -> set[str]:
        events = bundle.sentry_fastapi.events() + bundle.sentry_api.events()
        return {e["contexts"]["trace"]["trace_id"] for e in events if e.get("exception")}

    wait_for(
        lambda: {t for t, k in sent.items() if k == "error"} <= error_trace_ids(),
        timeout=20,
        message="a Sentry event for every /error",
    )
    errors = error_trace_ids()
    wait_for(
        lambda: errors <= set(bundle.traces()),
        timeout=30,
        message="every Sentry event's trace in Tempo",
    )
    # Probes of /error from the Node monitor: both services' spans of each of those traces.
    traces = bundle.traces()
    cross = [t for t in errors if t not in sent]
    assert cross, "the monitor's probes of /error produced Sentry events"
    for trace_id in cross:
        wait_for(
            lambda trace_id=trace_id: bundle.traces().get(trace_id) == {"fastapi-app", "api"},
            timeout=15,
            message=f"both services' spans of probe trace {trace_id}",
        )

    plain_ids = [t for t, k in sent.items() if k == "plain"]
    time.sleep(3)  # the last decisions (decision wait 2 s)
    traces = bundle.traces()
    kept = sum(1 for t in plain_ids if t in traces)
    assert _within(kept, plain, 0.10), f"{kept} of {plain} plain traces kept, expected ~10%"

    # Logs are not sampled: every request's access line reached Loki, kept trace or not.
    logged = {record.trace_id for record in bundle.loki.log_records()}
    assert set(plain_ids) <= logged, f"{len(set(plain_ids) - logged)} requests without logs"


def test_the_collector_counts_what_it_kept_and_sampled_out(bundle: Bundle) -> None:
    for _ in range(20):
        httpx.get(f"{bundle.app.url}/hello", timeout=10)
    wait_for(
        lambda: (
            bundle.collector.metric(
                "otelcol_processor_tail_sampling_global_count_traces_sampled_total", sampled="false"
            )
            > 0
        ),
        timeout=15,
        message="sampled-out traces counted",
    )
    assert bundle.collector.metric("otelcol_receiver_accepted_spans_total") > 0
    assert bundle.collector.metric("otelcol_receiver_accepted_log_records_total") > 0
    wait_for(
        lambda: (
            bundle.collector.metric("otelcol_exporter_sent_spans_total", exporter="otlp_http/tempo")
            > 0
        ),
        message="spans sent to Tempo counted per exporter",
    )


def test_a_forced_trace_is_kept_whatever_the_share(bundle: Bundle) -> None:
    forced = []
    for _ in range(10):
        trace_id, header = _traceparent()
        httpx.get(
            f"{bundle.app.url}/chain",
            headers={"traceparent": header, "tracestate": "signalbox=keep"},
            timeout=10,
        )
        forced.append(trace_id)
    for trace_id in forced:
        wait_for(
            lambda trace_id=trace_id: bundle.traces().get(trace_id) == {"fastapi-app", "api"},
            timeout=15,
            message=f"forced /chain trace {trace_id} with both services' spans",
        )


def test_sentry_gets_one_share_of_whole_traces_for_both_services() -> None:
    """With the Sentry overlay at 50%, each /chain trace reaches Sentry whole or not at all."""
    chains = 80
    with (
        OtlpReceiver() as tempo,
        OtlpReceiver() as loki,
        OtlpReceiver() as sentry_otlp,
        SentryReceiver() as sentry,
        run_collector(
            collector_env(
                tempo.traces_endpoint,
                loki.logs_endpoint,
                TAIL_SAMPLING_PERCENTAGE="100",
                SENTRY_OTLP_TRACES_ENDPOINT=f"{sentry_otlp.url}/api/1/integration/otlp/v1/traces",
                SENTRY_OTLP_PUBLIC_KEY="publickey",
                SENTRY_OTLP_SAMPLE_PERCENTAGE="50",
                **FAST,
            )
        ) as collector,
        node_api(_service_env("api", collector, sentry)) as node,
        fastapi_app(
            {**_service_env("fastapi-app", collector, sentry), "DOWNSTREAM_URL": node.url}
        ) as app,
    ):
        ids = []
        for _ in range(chains):
            trace_id, header = _traceparent()
            assert httpx.get(f"{app.url}/chain", headers={"traceparent": header}).status_code == 200
            ids.append(trace_id)

        def services_in(receiver: OtlpReceiver) -> dict[str, set[str]]:
            found: dict[str, set[str]] = {}
            for span in receiver.spans():
                found.setdefault(span.trace_id, set()).add(span.service_name)
            return found

        wait_for(lambda: set(ids) <= set(services_in(tempo)), timeout=30, message="all in Tempo")
        time.sleep(3)
        in_sentry = services_in(sentry_otlp)
        shared = [t for t in ids if t in in_sentry]
        assert all(in_sentry[t] == {"fastapi-app", "api"} for t in shared), in_sentry
        assert _within(len(shared), chains, 0.5), f"{len(shared)} of {chains} sent to Sentry"
        auth = [{k.lower(): v for k, v in h.items()} for _, h in sentry_otlp.requests]
        assert auth and all(h["x-sentry-auth"] == "sentry sentry_key=publickey" for h in auth)


@pytest.mark.parametrize("outage", ["hanging", "stopped"])
def test_collector_hanging_or_down_never_slows_a_request_and_data_flows_after(
    outage: str,
) -> None:
    ports = CollectorPorts.free()
    with OtlpReceiver() as tempo, OtlpReceiver() as loki, SentryReceiver() as sentry:
        env = collector_env(tempo.traces_endpoint, loki.logs_endpoint, **FAST)
        _survive_an_outage(outage, ports, env, tempo, sentry)


def _survive_an_outage(
    outage: str,
    ports: CollectorPorts,
    env: dict[str, str],
    tempo: OtlpReceiver,
    sentry: SentryReceiver,
) -> None:
    with (
        run_collector(env, ports=ports) as col,
        node_api(_service_env("api", col, sentry)) as node,
        fastapi_app(
            {**_service_env("fastapi-app", col, sentry), "DOWNSTREAM_URL": node.url}
        ) as app,
    ):

        def slowest_of(count: int) -> float:
            slowest = 0.0
            for _ in range(count):
                started = time.monotonic()
                assert httpx.get(f"{app.url}/chain", timeout=10).status_code == 200
                slowest = max(slowest, time.monotonic() - started)
            return slowest

        def dropped(service: Service) -> float:
            text = httpx.get(f"{service.url}/metrics", timeout=5).text
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("telemetry_dropped_total{")
            )

        if outage == "hanging":
            col.pause()  # connections are accepted, nothing answers
        else:
            col.stop()  # connections are refused
        # A request never waits for telemetry: far below the exporters' 5 s timeout.
        assert slowest_of(60) < 0.5
        for service in (app, node):
            wait_for(
                lambda service=service: dropped(service) > 0,
                timeout=30,
                message=f"{service.url}: drops counted while the collector is {outage}",
            )

        if outage == "hanging":
            col.resume()
            restarted = contextlib.nullcontext(col)
        else:  # a new collector on the same addresses, the services untouched
            restarted = run_collector(env, ports=ports)
        with restarted:
            trace_id, header = _traceparent()
            httpx.get(
                f"{app.url}/chain",
                headers={"traceparent": header, "tracestate": "signalbox=keep"},
                timeout=10,
            )
            wait_for(
                lambda: (
                    {s.service_name for s in tempo.spans() if s.trace_id == trace_id}
                    == {"fastapi-app", "api"}
                ),
                timeout=30,
                message="both services' data flows again once the collector is back",
            )


def test_collector_masks_pii_the_services_did_not_scrub(bundle: Bundle) -> None:
    """A record sent straight to the collector, as an unscrubbed service would send it."""
    trace_id = secrets.token_hex(16)
    leaks = {
        "user.email": "alice@example.com",
        "url.query": "q=alice%40example.com&page=2",
        "http.request.header.authorization": "Bearer abc.def.ghi",
        "session_id": "s3cr3t-session",
        "app.note": "call 555-12-3456 or pay with 4111 1111 1111 1111",
    }
    attributes = [{"key": k, "value": {"stringValue": v}} for k, v in leaks.items()]
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "leaky"}}]}
    span = {
        "traceId": trace_id,
        "spanId": secrets.token_hex(8),
        "name": "GET /leak",
        "kind": 2,
        "startTimeUnixNano": str(time.time_ns() - 1_000_000),
        "endTimeUnixNano": str(time.time_ns()),
        "status": {"code": 2},  # an error: kept by tail sampling
        "attributes": attributes,
    }
    log = {"body": {"stringValue": "leak test"}, "traceId": trace_id, "attributes": attributes}
    traces = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
    logs = {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": [log]}]}]}
    assert httpx.post(bundle.collector.traces_endpoint, json=traces).status_code == 200
    assert httpx.post(bundle.collector.logs_endpoint, json=logs).status_code == 200

    exported = wait_for(
        lambda: [s for s in bundle.tempo.spans() if s.trace_id == trace_id],
        timeout=15,
        message="the leaky span in Tempo",
    )[0]
    record = wait_for(
        lambda: [r for r in bundle.loki.log_records() if r.trace_id == trace_id],
        message="the leaky log record in Loki",
    )[0]
    for where, attrs in (("span", exported.attributes), ("log record", record.attributes)):
        text = repr(attrs)
        for secret in ("alice", "abc.def.ghi", "s3cr3t", "555-12-3456", "4111 1111"):
            assert secret not in text, f"{secret!r} reached the {where}: {attrs}"
        assert attrs["url.query"].endswith("&page=2"), "only the sensitive part is masked"


def test_validate_passes_a_good_collector_config_and_names_each_defect_of_a_bad_one() -> None:
    good = otel_collector.run(FIXTURES / "good")
    assert good and all(f.status is Status.PASSED for f in good), good
    bad = [f"{f.location} | {f.message}" for f in otel_collector.run(FIXTURES / "bad")]
    expected = [
        "otel-collector/config.yaml | the collector refuses config.yaml",
        "the config uses attributes, which the builder manifest does not build",
        "the image pins 0.161.0 but the manifest builds 0.160.0",
        "'loki-db' is no compose service",
        "fastapi-app sends OTLP to 'http://tempo:4318', not to the collector",
    ]
    for message in expected:
        assert any(message in line for line in bad), (message, bad)


def test_the_real_collector_refuses_to_start_on_a_broken_config(tmp_path: Path) -> None:
    """The same defect `signalbox validate` reports stops the collector at start-up."""
    config_dir = tmp_path / "otel-collector"
    shutil.copytree(REPO / "otel-collector", config_dir)
    config = config_dir / "config.yaml"
    config.write_text(config.read_text().replace("decision_wait:", "decision_wiat:"))
    started = subprocess.run(
        ["sh", str(config_dir / "entrypoint.sh")],
        env={
            "PATH": "/usr/bin:/bin",
            "OTELCOL_BIN": str(REPO / ".tools" / "bin" / "otelcol"),
            "OTELCOL_CONFIG_DIR": str(config_dir),
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert started.returncode != 0
    assert "invalid keys: decision_wiat" in started.stderr
    reported = [f.message for f in otel_collector.run(tmp_path) if f.status is Status.FAILED]
    assert any("invalid keys: decision_wiat" in message for message in reported), reported


def test_entrypoint_names_a_bad_setting_before_starting() -> None:
    started = subprocess.run(
        ["sh", str(REPO / "otel-collector" / "entrypoint.sh")],
        env={
            "PATH": "/usr/bin:/bin",
            "OTELCOL_BIN": "/bin/false",
            "TAIL_SAMPLING_PERCENTAGE": "ten",
            "SENTRY_OTLP_TRACES_ENDPOINT": "https://o1.ingest.sentry.io/api/1/integration/otlp/v1/traces",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert started.returncode == 1
    assert "TAIL_SAMPLING_PERCENTAGE: 'ten' is not a percentage" in started.stderr
    assert "SENTRY_OTLP_PUBLIC_KEY: required" in started.stderr


def test_a_backend_refusing_the_data_is_counted_as_failed_per_exporter() -> None:
    """What the OtelCollectorExportFailing alert and the Stack health panels read."""
    with (
        OtlpReceiver() as tempo,
        OtlpReceiver() as loki,
        # A path the stand-ins answer 404: a permanent error, not retried.
        run_collector(
            collector_env(f"{tempo.url}/wrong/traces", f"{loki.url}/wrong/logs", **FAST)
        ) as collector,
    ):
        trace_id = secrets.token_hex(16)
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "t"}}]}
        span = {
            "traceId": trace_id,
            "spanId": secrets.token_hex(8),
            "name": "failing",
            "startTimeUnixNano": "1",
            "endTimeUnixNano": "2",
            "status": {"code": 2},
        }
        traces = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
        log = {"body": {"stringValue": "x"}}
        logs = {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": [log]}]}]}
        httpx.post(collector.traces_endpoint, json=traces).raise_for_status()
        httpx.post(collector.logs_endpoint, json=logs).raise_for_status()
        for metric, exporter in (
            ("otelcol_exporter_send_failed_spans_total", "otlp_http/tempo"),
            ("otelcol_exporter_send_failed_log_records_total", "otlp_http/loki"),
        ):
            wait_for(
                lambda metric=metric, exporter=exporter: (
                    collector.metric(metric, exporter=exporter) >= 1
                ),
                timeout=20,
                message=f"{metric}{{exporter={exporter}}}",
            )
