"""Start the real sample services as child processes, the way users start them.

FastAPI: ``python -m app`` in examples/fastapi-app; Node: ``npm start`` in examples/api.
Each gets a free port and only the environment the test gives it (plus PATH/HOME), and is
stopped with SIGTERM (then SIGKILL) when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from collector import Collector
    from receivers import OtlpReceiver, SentryReceiver

REPO = Path(__file__).resolve().parents[2]
FASTAPI_DIR = REPO / "examples" / "fastapi-app"
NODE_DIR = REPO / "examples" / "api"
_INHERITED = ("PATH", "HOME", "LANG", "TMPDIR", "NODE_OPTIONS", "SYSTEMROOT")
# The project's own tools (`make setup-node` puts the pinned Node there) come first on PATH, as
# under make: `npm start` then runs the service on that Node, not on the machine's.
TOOLS_BIN = REPO / ".tools" / "bin"


def pinned_node_version() -> str:
    """The Node version scripts/install-node.sh installs, e.g. ``24.22.3``."""
    script = (REPO / "scripts" / "install-node.sh").read_text()
    return next(
        line.split("=", 1)[1].strip()
        for line in script.splitlines()
        if line.startswith("NODE_VERSION=")
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM to the whole process group: `npm start` does not pass signals on to node."""
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait()
        # The launcher may be gone while its child (node under npm) still shuts down.
        _signal_group(self.process, signal.SIGKILL)
        return self.process.returncode


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


@contextlib.contextmanager
def run_service(
    command: list[str],
    cwd: Path,
    env: Mapping[str, str],
    port: int | None = None,
    ready_path: str = "/ready",
    timeout: float = 30.0,
) -> Iterator[Service]:
    port = port or free_port()
    full_env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
    full_env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{full_env.get('PATH', os.defpath)}"
    full_env.update({"PORT": str(port), **env})
    with tempfile.NamedTemporaryFile(prefix=f"{cwd.name}-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=cwd, env=full_env, stdout=sink, stderr=sink, start_new_session=True
        )
    service = Service(f"http://127.0.0.1:{port}", port, process, log_path)
    try:
        _wait_ready(service, ready_path, timeout)
        yield service
    finally:
        service.stop()


def fastapi_app(
    env: Mapping[str, str], **kwargs: object
) -> contextlib.AbstractContextManager[Service]:
    return run_service([sys.executable, "-m", "app"], FASTAPI_DIR, env, **kwargs)  # type: ignore[arg-type]


def node_api(
    env: Mapping[str, str], **kwargs: object
) -> contextlib.AbstractContextManager[Service]:
    return run_service(["npm", "start", "--silent"], NODE_DIR, env, **kwargs)  # type: ignore[arg-type]


def telemetry_env(
    service_name: str,
    otlp: OtlpReceiver | Collector,
    sentry: SentryReceiver | None = None,
    **extra: str,
) -> dict[str, str]:
    """Environment for a sample service exporting to loopback receivers, flushed every 100 ms.

    Traces and logs go to ``otlp`` (a receiver, or the collector in front of one), errors to
    ``sentry`` if given; ``extra`` adds variables.
    """
    env = {
        "OTEL_SERVICE_NAME": service_name,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.traces_endpoint,
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": otlp.logs_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
    }
    if sentry is not None:
        env["SENTRY_DSN"] = sentry.dsn
    return {**env, **extra}


def _wait_ready(service: Service, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise AssertionError(
                f"service exited with {service.process.returncode}:\n{service.output()}"
            )
        try:
            if httpx.get(service.url + path, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"service not ready after {timeout}s:\n{service.output()}")
