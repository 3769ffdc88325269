"""Where the service listens: a port in use or a bad HOST stops start-up in one line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

FASTAPI_DIR = Path(__file__).resolve().parents[1]


def _start(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=FASTAPI_DIR,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_port_in_use_names_port_in_one_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = _start(PORT=str(port), HOST="127.0.0.1")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"fastapi-app: PORT: {port} is already in use ([127.0.0.1]:{port}); "
        "stop the other server or set PORT"
    )
    assert result.stdout == ""  # nothing started: no telemetry line either


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("no-such-host.invalid", "is neither an address nor a name that resolves here"),
        ("192.0.2.1", "is not an address of this machine"),  # TEST-NET-1, never local
    ],
)
def test_a_bad_host_names_host_in_one_line(host: str, problem: str) -> None:
    result = _start(HOST=host, PORT="18999")
    assert result.returncode == 2
    assert result.stderr.strip() == f"fastapi-app: HOST: {host!r} {problem}"
