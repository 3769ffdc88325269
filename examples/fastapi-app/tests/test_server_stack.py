"""The server the service runs on: uvicorn's standard stack, uvloop and httptools.

Without them a request costs about half as much CPU again, and uvicorn's default would fall
back to asyncio and h11 silently. TCP_NODELAY and the one dual-stack socket, which depend on
the loop, are checked on this stack in test_service.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from services import FASTAPI_DIR, fastapi_app, free_port


def test_the_service_runs_on_uvloop_and_httptools() -> None:
    """Their compiled extensions are mapped into the serving process; uvicorn imports only the
    loop and parser it uses, so on asyncio and h11 neither would be."""
    with fastapi_app({}) as app:
        mapped = Path(f"/proc/{app.process.pid}/maps").read_text()
    assert "/uvloop/loop." in mapped, "the event loop is not uvloop"
    assert "/httptools/parser/parser." in mapped, "the HTTP parser is not httptools"


@pytest.mark.parametrize("package", ["uvloop", "httptools"])
def test_a_missing_server_package_stops_start_up_naming_it(package: str, tmp_path: Path) -> None:
    """An image built without one must not quietly serve at two thirds of its capacity."""
    # None in sys.modules is Python's way to make an import fail as if the package were not
    # installed; sitecustomize runs it in the service's interpreter before anything else.
    (tmp_path / "sitecustomize.py").write_text(f"import sys\nsys.modules[{package!r}] = None\n")
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=FASTAPI_DIR,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path), "PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert f"{package} not installed" in result.stderr
    assert "Traceback" not in result.stderr
