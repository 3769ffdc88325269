"""`make bench` judges capacity by instructions per request counted with callgrind
(bench/callgrind.py). These tests run the real thing on a tiny server: Valgrind, callgrind_control
and the load generator, with nothing timed."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import callgrind

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from services import run_service

# A server whose cost per request is set by the request: /?n=N runs a loop of N steps.
_SERVER = textwrap.dedent(
    """
    import os
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            n = int(self.path.partition("n=")[2] or 0)
            total = sum(range(n))
            status = 500 if self.path.startswith("/fail") else 200
            body = str(total).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
    """
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """The server under callgrind, counting nothing until told to."""
    why = callgrind.available()
    if why is not None:
        pytest.fail(why)
    home = tmp_path_factory.mktemp("callgrind")
    script = home / "server.py"
    script.write_text(_SERVER)
    command = callgrind.command([sys.executable, str(script)], home)
    with run_service(command, home, {}, ready_path="/?n=0", timeout=120) as service:
        yield service, home


def test_counts_the_requests_work_and_not_the_start_up(server: tuple[Any, Path]) -> None:
    service, out = server
    light = callgrind.count(service.process.pid, service.url, ["/?n=10"], 10, 20, out)
    heavy = callgrind.count(service.process.pid, service.url, ["/?n=50000"], 10, 20, out)

    # Python's start-up alone executes tens of millions of instructions: counting began after it.
    assert light.per_request < 5_000_000
    # 50,000 loop steps cost far more than 10 (tens of instructions each).
    assert heavy.per_request - light.per_request > 1_000_000
    # The same work counted twice agrees closely: this is why the verdicts use it.
    assert light.settling.per_request == pytest.approx(light.per_request, rel=0.1)
    assert light.measured.requests == 20


def test_a_mix_is_sent_in_exact_shares(server: tuple[Any, Path]) -> None:
    service, _ = server
    failed = callgrind.drive(service.url, ["/?n=1"] * 9 + ["/fail"], 100)
    assert failed == 10


def test_a_file_without_totals_is_refused(tmp_path: Path) -> None:
    dump = tmp_path / "callgrind.out.1"
    dump.write_text("version: 1\nevents: Ir\n")
    with pytest.raises(RuntimeError, match="no totals line"):
        callgrind.read_total(dump)
    dump.write_text("version: 1\nevents: Ir\nsummary: 1234\ntotals: 1234\n")
    assert callgrind.read_total(dump) == 1234
