"""`make bench` weighs each custom piece of the sample services against the library's own way
(issue #21: a piece stays only where it saves at least 10% of an instrumented request). It does
so by starting the service with the piece swapped back (bench/stock_fastapi.py,
bench/stock-node/). These tests start every such variant the way the benchmark does and check it
still serves and still delivers its traces and logs: a swap that broke the service would make
the benchmark compare against something that does less work, and call a piece worth keeping."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import httpx
import pytest

from bench import report, runner

_SPECS = runner._specs()
_PIECES = [
    pytest.param(spec, piece, id=f"{key}-{piece.key}")
    for key, spec in _SPECS.items()
    for piece in spec.pieces
]


def test_both_services_name_their_custom_pieces() -> None:
    for spec in _SPECS.values():
        assert spec.pieces, f"{spec.key}: no custom piece is weighed by make bench"
        assert len({p.key for p in spec.pieces}) == len(spec.pieces)


@pytest.mark.parametrize(("spec", "piece"), _PIECES)
def test_a_stock_variant_serves_and_exports_like_the_service(
    spec: runner.ServiceSpec, piece: runner.StockPiece
) -> None:
    paths = [spec.hot_path] * 9 + ["/error"]
    with contextlib.ExitStack() as stack:
        backends = runner._healthy(stack)
        server = stack.enter_context(runner._start(spec, f"stock:{piece.key}", backends, False))
        statuses = [httpx.get(server.url + path, timeout=10).status_code for path in paths * 2]
        assert statuses == [500 if p == "/error" else 200 for p in paths * 2]
        otlp = backends.otlp
        assert otlp is not None
        deadline = time.monotonic() + 20  # the batch processors export every few seconds
        while time.monotonic() < deadline and (
            otlp.server_span_count < len(statuses) or otlp.log_record_count < len(statuses)
        ):
            time.sleep(0.2)
        assert otlp.server_span_count >= len(statuses), "server spans did not reach the receiver"
        assert otlp.log_record_count >= len(statuses), "log records did not reach the receiver"
        assert len(otlp.error_trace_ids) == 2, "each /error's trace was exported"


def test_an_unknown_fastapi_piece_is_refused_by_name() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.stock_fastapi", "otlp-encoder,nope"],
        capture_output=True,
        text=True,
        cwd=runner.FASTAPI_DIR,
        env={"PYTHONPATH": str(runner.REPO), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown: nope" in done.stderr


def _count(thousands_per_request: int) -> runner.callgrind.Count:
    window = runner.callgrind.Window(thousands_per_request * 1000 * 1000, 1000, 0, 1.0)
    return runner.callgrind.Count(window, window)


def test_a_piece_is_judged_by_the_share_of_the_request_it_saves() -> None:
    spec = _SPECS["fastapi"]
    hot = next(p for p in spec.pieces if p.paths == "hot")
    result = runner.ServiceResult(spec, {}, {}, pinned=False)
    result.instructions = {"full": _count(900), f"stock:{hot.key}": _count(1000)}
    (kept,) = report._piece_targets(result)
    assert kept.met
    assert kept.measured == "10% of a 100%-traced request (900k vs 1,000k per request)"
    result.instructions[f"stock:{hot.key}"] = _count(910)
    (dropped,) = report._piece_targets(result)
    assert not dropped.met and dropped.measured.startswith("1% of")
