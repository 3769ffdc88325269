"""``signalbox traffic`` against the real FastAPI service (``python -m app``).

/chain's downstream is a small loopback server that follows the Node service's documented
inventory contract (stubs.InventoryStub), so a test can take it down; the Node service itself
is exercised end to end in test_verify_prometheus.py.
The service counts what it served in ``http_server_requests_total{route,status_class}``; every
test compares traffic's summary with that count, so a request counted but never sent (or sent
twice) fails the test.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from services import Service, fastapi_app, free_port
from stubs import InventoryStub

from signalbox.cli import main

SIGNALBOX = [sys.executable, "-m", "signalbox"]
_SERIES = re.compile(
    r'^http_server_requests_total\{method="GET",route="([^"]+)",status_class="(\dxx)"\} (\S+)$',
    re.MULTILINE,
)


@dataclass
class Services:
    app: Service
    inventory: InventoryStub


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    with InventoryStub() as inventory, fastapi_app({"DOWNSTREAM_URL": inventory.url}) as app:
        yield Services(app, inventory)


def served(app: Service) -> Counter[tuple[str, str]]:
    """What the service itself counted, by (route, status class)."""
    text = httpx.get(f"{app.url}/metrics", timeout=5).text
    return Counter({(r, c): int(float(v)) for r, c, v in _SERIES.findall(text)})


def as_classes(summary: dict[str, Any]) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for route, stats in summary["by_route"].items():
        for status, n in stats["by_status"].items():
            counts[(route, f"{status[0]}xx")] += n
    return counts


def delta(
    after: Counter[tuple[str, str]], before: Counter[tuple[str, str]], routes: set[str]
) -> Counter[tuple[str, str]]:
    return Counter(
        {k: after[k] - before[k] for k in after if k[0] in routes and after[k] != before[k]}
    )


TRAFFIC_ROUTES = {"/", "/hello", "/error", "/slow", "/chain"}


def test_summary_matches_what_the_service_served(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    before = served(services.app)
    code = main(
        ["traffic", "--target", services.app.url, "--rate", "50", "--duration", "2",
         "--slow-ms", "5:60", "--seed", "7", "--output", "json"]
    )  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    after = served(services.app)

    assert code == 0, summary
    assert summary["ok"] is True
    assert summary["requests"] == summary["planned"] == 100
    assert sum(summary["by_status"].values()) == 100
    assert delta(after, before, TRAFFIC_ROUTES) == as_classes(summary)
    # The mix: every kind of request was sent, with the statuses a user expects.
    assert set(summary["by_route"]) == TRAFFIC_ROUTES
    assert set(summary["by_route"]["/error"]["by_status"]) == {"500"}
    assert set(summary["by_route"]["/chain"]["by_status"]) <= {"200", "404"}
    latency = summary["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert summary["by_route"]["/slow"]["latency_ms"]["max"] >= 5
    assert 1.8 < summary["duration_s"] < 10


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_interrupt_prints_the_summary_so_far_after_in_flight_requests_finish(
    services: Services, signum: signal.Signals, exit_code: int
) -> None:
    before = served(services.app)
    process = subprocess.Popen(
        [*SIGNALBOX, "traffic", "--target", services.app.url, "--duration", "0",
         "--rate", "30", "--slow-fraction", "0.5", "--slow-ms", "300:600", "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_until(lambda: sum(delta(served(services.app), before, TRAFFIC_ROUTES).values()) >= 15)
        process.send_signal(signum)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    summary = json.loads(out)

    assert process.returncode == exit_code, err
    assert summary["interrupted"] is True
    assert summary["requests"] >= 15
    assert summary["abandoned"] == 0
    # In-flight requests (slow ones among them) were waited for, so both sides agree.
    assert delta(served(services.app), before, TRAFFIC_ROUTES) == as_classes(summary)
    assert b"stopping; letting requests in flight finish" in err


def test_text_summary_and_progress_lines_without_a_terminal(services: Services) -> None:
    result = subprocess.run(
        [*SIGNALBOX, "traffic", "--target", services.app.url, "--rate", "20",
         "--duration", "2.5", "--report-every", "1", "--slow-ms", "5:20"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert f"signalbox traffic: 20/s to {services.app.url} for 2.5 s" in result.stderr
    assert re.search(
        r"signalbox traffic: \d+ requests in \d+ s \([\d.]+/s\): 200:\d+", result.stderr
    )
    for route in ("/chain", "/error", "/hello", "/slow", "all"):
        assert route in result.stdout
    assert re.search(r"OK: 50 requests in [\d.]+ s \([\d.]+/s of 20/s\)", result.stdout)


def test_downstream_down_shows_up_as_unexpected_statuses(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    before = served(services.app)
    services.inventory.down = True
    try:
        code = main(
            ["traffic", "--target", services.app.url, "--rate", "40", "--duration", "1",
             "--chain-fraction", "1", "--error-fraction", "0", "--slow-fraction", "0",
             "--output", "json"]
        )  # fmt: skip
    finally:
        services.inventory.down = False
    summary = json.loads(capsys.readouterr().out)

    assert delta(served(services.app), before, TRAFFIC_ROUTES) == as_classes(summary)
    assert code == 1
    assert summary["ok"] is False
    assert set(summary["by_route"]) == {"/chain"}
    assert summary["unexpected"] == {"/chain 503": 40}


def test_one_request_at_a_time_is_a_valid_concurrency(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    before = served(services.app)
    code = main(
        ["traffic", "--target", services.app.url, "--rate", "20", "--duration", "0.5",
         "--concurrency", "1", "--slow-fraction", "0", "--output", "json"]
    )  # fmt: skip
    summary = json.loads(capsys.readouterr().out)

    assert code == 0, summary
    assert summary["requests"] == summary["planned"] == 10
    assert delta(served(services.app), before, TRAFFIC_ROUTES) == as_classes(summary)


def test_unreachable_target_counts_connection_errors(capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    code = main(
        ["traffic", "--target", closed, "--rate", "20", "--duration", "0.5", "--output", "json"]
    )
    summary = json.loads(capsys.readouterr().out)

    assert code == 1
    assert summary["errors"] == {"connect": 10}
    assert summary["by_status"] == {}


def test_waiting_for_a_service_that_never_gets_ready(capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code = main(["traffic", "--target", closed, "--wait", "1"])
    out = capsys.readouterr().out

    assert code == 1
    assert "NOT STARTED: service not ready after 1 s" in out
    assert time.monotonic() - started < 5


def test_the_latency_sample_stays_bounded_on_endless_runs() -> None:
    from signalbox import traffic

    summary = traffic.Summary()
    for i in range(traffic._RESERVOIR * 3):
        summary.record("/hello", "200", (i % 1000) / 1000, True)

    assert summary.requests == traffic._RESERVOIR * 3
    assert summary.latencies is not None
    assert len(summary.latencies.samples) == traffic._RESERVOIR
    p = summary.latencies.percentiles()
    assert p["max"] == 999.0
    assert 400 < p["p50"] < 600  # type: ignore[operator]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--error-fraction", "0.6", "--slow-fraction", "0.3", "--chain-fraction", "0.2"],
            "at most 1",
        ),
        (["--rate", "0"], "must be > 0.01"),
        (["--target", "localhost:8000"], "is not an http(s) URL"),
        (["--slow-ms", "900:100"], "MIN <= MAX"),
        (["--duration", "-1"], "must be >= 0"),
        (["--error-fraction", "1.5"], "must be >= 0 and <= 1"),
        (["--concurrency", "0"], "'0' must be >= 1 and <= 1000"),
        (["--concurrency", "2.5"], "'2.5' is not a whole number"),
    ],
)
def test_misuse_exits_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traffic", *argv]) == 2
    assert message in capsys.readouterr().err


def _wait_until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for traffic to reach the service")
        time.sleep(0.1)
