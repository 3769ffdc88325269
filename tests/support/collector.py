"""The real OpenTelemetry Collector for tests: the binary ``make backends`` builds, started by
the image's own entrypoint (``otel-collector/entrypoint.sh``) with the repository's config, on
free loopback ports. Only the addresses are substituted, as ``signalbox stack up`` does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from services import free_port

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / ".tools" / "bin" / "otelcol"


@dataclass(frozen=True)
class CollectorPorts:
    otlp_http: int
    otlp_grpc: int
    metrics: int
    health: int

    @classmethod
    def free(cls) -> CollectorPorts:
        return cls(free_port(), free_port(), free_port(), free_port())


@dataclass
class Collector:
    otlp_http: str  # base URL the services' OTEL_EXPORTER_OTLP_ENDPOINT takes
    otlp_grpc_port: int
    metrics_url: str
    health_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def traces_endpoint(self) -> str:
        return f"{self.otlp_http}/v1/traces"

    @property
    def logs_endpoint(self) -> str:
        return f"{self.otlp_http}/v1/logs"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the collector's own metric ``name`` over series matching ``labels``."""
        total = 0.0
        for line in httpx.get(self.metrics_url, timeout=5).text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            series, _, value = line.rpartition(" ")
            if all(f'{key}="{val}"' in series for key, val in labels.items()):
                total += float(value)
        return total

    def stop(self) -> None:
        """Down: the process ends, connections are refused."""
        self.process.terminate()
        self.process.wait(15)

    def pause(self) -> None:
        """Hang: the process stops answering, its sockets still accept connections."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


def collector_env(tempo: str, loki: str, **extra: str) -> dict[str, str]:
    """Exporters to stand-ins for Tempo (``tempo``: a traces URL) and Loki (a logs URL)."""
    return {"TEMPO_OTLP_TRACES_URL": tempo, "LOKI_OTLP_LOGS_URL": loki, **extra}


@contextlib.contextmanager
def run_collector(
    env: Mapping[str, str],
    metrics_port: int | None = None,
    ports: CollectorPorts | None = None,
    timeout: float = 30.0,
) -> Iterator[Collector]:
    """The collector with ``env`` on ``ports`` (free ones by default; ``metrics_port``: where
    Prometheus scrapes it)."""
    if not BINARY.exists():
        raise AssertionError("the collector is not built: run `make backends`")
    ports = ports or CollectorPorts.free()
    http_port, grpc_port, health_port = ports.otlp_http, ports.otlp_grpc, ports.health
    metrics_port = metrics_port or ports.metrics
    with tempfile.NamedTemporaryFile(prefix="otelcol-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OTELCOL_BIN": str(BINARY),
        "OTELCOL_CONFIG_DIR": str(REPO / "otel-collector"),
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http_port}",
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
        "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{health_port}",
        "OTELCOL_METRICS_HOST": "127.0.0.1",
        "OTELCOL_METRICS_PORT": str(metrics_port),
        **env,
    }
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            ["sh", str(REPO / "otel-collector" / "entrypoint.sh")],
            env=full_env,
            stdout=sink,
            stderr=sink,
        )
    collector = Collector(
        f"http://127.0.0.1:{http_port}",
        grpc_port,
        f"http://127.0.0.1:{metrics_port}/metrics",
        f"http://127.0.0.1:{health_port}/",
        process,
        log_path,
    )
    try:
        _wait_healthy(collector, timeout)
        yield collector
    finally:
        with contextlib.suppress(ProcessLookupError):
            collector.resume()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(collector: Collector, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if collector.process.poll() is not None:
            raise AssertionError(f"collector exited:\n{collector.output()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(collector.health_url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"collector not healthy after {timeout}s:\n{collector.output()}")
