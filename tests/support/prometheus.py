"""A real Prometheus server (Debian's package) for tests, on a loopback port.

Debian bookworm ships Prometheus 2.42; the images run 3.x. The flags used here exist in both
(``--enable-feature=exemplar-storage`` is a no-op warning on 3.x, where exemplar storage is
configured in the file instead).

- ``run_prometheus(config)``: the binary with a given configuration and the usual test flags.
- ``start_prometheus(command, port, workdir)``: Prometheus started some other way, such as the
  image's entrypoint with its environment variables.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from services import free_port


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def exemplar_trace_ids(self, expr: str, window_s: int = 600) -> set[str]:
        now = time.time()
        data = self.api("query_exemplars", query=expr, start=now - window_s, end=now + 60)
        return {
            exemplar["labels"].get("trace_id", exemplar["labels"].get("traceID", ""))
            for series in data
            for exemplar in series["exemplars"]
        }

    def targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self.api("targets")["activeTargets"]
        return targets

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def scrape_config(job: str, targets: Sequence[str], interval: str = "1s") -> dict[str, Any]:
    return {
        "job_name": job,
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "static_configs": [{"targets": list(targets)}],
    }


@contextlib.contextmanager
def run_prometheus(
    config: dict[str, Any] | Path,
    extra_flags: Sequence[str] = (),
    port: int | None = None,
    timeout: float = 30.0,
) -> Iterator[Prometheus]:
    """Prometheus with ``config`` (a dict, or a file), exemplar storage and remote write on.

    ``port``: where it listens on 127.0.0.1, free by default; pass one to write a config that
    scrapes Prometheus itself.
    """
    binary = shutil.which("prometheus")
    if binary is None:
        raise AssertionError("prometheus is not installed: run `make setup-system`")
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="prometheus-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        if isinstance(config, Path):
            config_path = config
        else:
            config_path = workdir / "prometheus.yml"
            config_path.write_text(yaml.safe_dump(config))
        command = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage",
            "--web.enable-remote-write-receiver",
            "--web.enable-lifecycle",
            *extra_flags,
        ]
        with start_prometheus(command, port, workdir, timeout=timeout) as server:
            yield server


@contextlib.contextmanager
def start_prometheus(
    command: Sequence[str],
    port: int,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[Prometheus]:
    """Run ``command``, which must start Prometheus on 127.0.0.1:``port``; stop it at the end.

    Its output goes to ``workdir``/prometheus.log; ``env`` replaces the environment if given.
    """
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=sink)
    server = Prometheus(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_ready(server, timeout)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_scrapes(server: Prometheus, jobs: Sequence[str], timeout: float = 30.0) -> None:
    """Wait until every target of ``jobs`` has been scraped successfully at least once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        targets = [t for t in server.targets() if t["labels"].get("job") in jobs]
        if targets and all(t["health"] == "up" for t in targets):
            return
        time.sleep(0.5)
    raise AssertionError(f"targets not up after {timeout}s: {server.targets()}")


def _wait_ready(server: Prometheus, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{server.output()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"prometheus not ready after {timeout}s:\n{server.output()}")
