"""`signalbox stack up|status|down`: the bundle natively, as a user without Docker runs it.

Runs the real CLI on free loopback ports with its state in a temporary folder: Debian's
Prometheus through prometheus/entrypoint.sh, the collector built by `make backends` through
otel-collector/entrypoint.sh, both sample services. Loki and Tempo cannot run here, so the
collector's exporters point at a loopback OTLP receiver standing in for both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from receivers import OtlpReceiver, wait_for
from services import free_port, pinned_node_version

REPO = Path(__file__).resolve().parents[1]


def _signalbox(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signalbox", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], dict]]:
    state = tmp_path_factory.mktemp("stack")
    with OtlpReceiver() as backends:
        env = {
            **os.environ,
            "PROMETHEUS_PORT": str(free_port()),
            "PROMETHEUS_SCRAPE_INTERVAL": "1s",
            "OTELCOL_OTLP_HTTP_PORT": str(free_port()),
            "OTELCOL_OTLP_GRPC_PORT": str(free_port()),
            "OTELCOL_METRICS_PORT": str(free_port()),
            "OTELCOL_HEALTH_PORT": str(free_port()),
            "FASTAPI_APP_PORT": str(free_port()),
            "API_PORT": str(free_port()),
            "TEMPO_OTLP_TRACES_URL": backends.traces_endpoint,
            "LOKI_OTLP_LOGS_URL": backends.logs_endpoint,
            "TAIL_SAMPLING_PERCENTAGE": "100",
            "TAIL_SAMPLING_DECISION_WAIT": "1s",
        }
        up = _signalbox("stack", "up", "--state-dir", str(state), env=env)
        try:
            assert up.returncode == 0, up.stdout + up.stderr
            status = _signalbox(
                "stack", "status", "--state-dir", str(state), "--output", "json", env=env
            )
            yield env, {"up": up, "status": status, "state": state, "backends": backends}
        finally:
            _signalbox("stack", "down", "--state-dir", str(state), env=env)


def test_up_starts_each_component_healthy_and_says_where(
    stack: tuple[dict[str, str], dict],
) -> None:
    _env, run = stack
    lines = run["up"].stdout.splitlines()
    for name in ("prometheus", "otel-collector", "fastapi-app", "api"):
        line = next(line for line in lines if line.startswith(name + " "))
        assert "pid" in line and ".log" in line, line
    # What cannot run here is said, not silently left out.
    assert any(line.startswith("tempo ") and "not started" in line for line in lines)
    status = json.loads(run["status"].stdout)
    assert run["status"].returncode == 0
    assert {c["name"] for c in status["components"]} == {
        "prometheus",
        "otel-collector",
        "fastapi-app",
        "api",
    }
    assert all(c["healthy"] for c in status["components"])


def test_the_services_telemetry_flows_through_the_collector(
    stack: tuple[dict[str, str], dict],
) -> None:
    env, run = stack
    app = f"http://127.0.0.1:{env['FASTAPI_APP_PORT']}"
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = httpx.get(
        f"{app}/chain", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}, timeout=10
    )
    assert response.status_code == 200
    backends: OtlpReceiver = run["backends"]
    wait_for(
        lambda: (
            {s.service_name for s in backends.spans() if s.trace_id == trace_id}
            == {"fastapi-app", "api"}
        ),
        timeout=30,
        message="both services' spans through the collector",
    )
    wait_for(
        lambda: any(r.trace_id == trace_id for r in backends.log_records()),
        message="the request's log lines through the collector",
    )
    # Prometheus, rendered from the repository's template, scrapes all of them.
    prometheus = f"http://127.0.0.1:{env['PROMETHEUS_PORT']}"

    def jobs_up() -> set[str]:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]
        return {t["labels"]["job"] for t in targets["activeTargets"] if t["health"] == "up"}

    wait_for(
        lambda: {"fastapi-app", "api", "otel-collector", "prometheus"} <= jobs_up(),
        timeout=30,
        message="every started component scraped",
    )


def test_the_api_runs_on_the_pinned_node_and_says_so(stack: tuple[dict[str, str], dict]) -> None:
    env, run = stack
    pinned = pinned_node_version()
    # The Node that serves /metrics (prom-client's nodejs_version_info), and the one `up` names.
    metrics = httpx.get(f"http://127.0.0.1:{env['API_PORT']}/metrics", timeout=10).text
    assert f'nodejs_version_info{{version="v{pinned}"' in metrics
    api_line = next(line for line in run["up"].stdout.splitlines() if line.startswith("api "))
    assert f"node {pinned}" in api_line, api_line


def test_up_twice_is_refused_and_down_stops_exactly_what_up_started(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OTELCOL_OTLP_HTTP_PORT": str(free_port()),
        "OTELCOL_OTLP_GRPC_PORT": str(free_port()),
        "OTELCOL_METRICS_PORT": str(free_port()),
        "OTELCOL_HEALTH_PORT": str(free_port()),
    }
    state = str(tmp_path)
    up = _signalbox("stack", "up", "--only", "otel-collector", "--state-dir", state, env=env)
    assert up.returncode == 0, up.stderr
    pid = json.loads((tmp_path / "state.json").read_text())["components"][0]["pid"]
    again = _signalbox("stack", "up", "--only", "otel-collector", "--state-dir", state, env=env)
    assert again.returncode == 2 and "already up" in again.stderr
    down = _signalbox("stack", "down", "--state-dir", state, env=env)
    assert down.returncode == 0 and f"pid {pid}" in down.stdout
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    status = _signalbox("stack", "status", "--state-dir", state, env=env)
    assert status.returncode == 1 and "nothing runs" in status.stdout


def test_a_component_that_does_not_come_up_is_named_with_its_log(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copy(REPO / "docker-compose.yml", bundle)
    shutil.copytree(REPO / "otel-collector", bundle / "otel-collector")
    config = bundle / "otel-collector" / "config.yaml"
    config.write_text(config.read_text().replace("num_traces:", "num_trace:"))
    env = {
        **os.environ,
        "PATH": f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "OTELCOL_HEALTH_PORT": str(free_port()),
        "OTELCOL_METRICS_PORT": str(free_port()),
    }
    up = _signalbox(
        "stack",
        "up",
        "--bundle",
        str(bundle),
        "--only",
        "otel-collector",
        "--timeout",
        "20",
        env=env,
    )
    assert up.returncode == 1
    assert "otel-collector did not come up: the process exited" in up.stderr
    assert "invalid keys: num_trace" in up.stderr  # the last lines of its log
    assert json.loads((bundle / ".stack" / "state.json").read_text())["components"] == []


def test_misuse_is_exit_2() -> None:
    env = dict(os.environ)
    assert (
        _signalbox("stack", "up", "--only", "grafanna", "--state-dir", "/tmp/x", env=env).returncode
        == 2
    )
    assert _signalbox("stack", "status", "--bundle", "/", env=env).returncode == 2
    bad_port = _signalbox("stack", "up", "--state-dir", "/tmp/x", env={**env, "API_PORT": "http"})
    assert bad_port.returncode == 2 and "API_PORT" in bad_port.stderr
