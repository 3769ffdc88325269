"""The service as an operator meets it: start-up, configuration errors, addresses, bad input."""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from receivers import SentryReceiver, wait_for
from services import FASTAPI_DIR, Service, fastapi_app


@pytest.fixture(scope="module")
def plain_app() -> Iterator[Service]:
    """One app without telemetry backends, shared by the tests that only send requests."""
    with fastapi_app({}) as app:
        yield app


def test_answers_on_ipv4_and_ipv6_from_one_process(plain_app: Service) -> None:
    v4 = httpx.get(f"http://127.0.0.1:{plain_app.port}/health")
    v6 = httpx.get(f"http://[::1]:{plain_app.port}/health")
    assert v4.status_code == v6.status_code == 200


def test_keep_alive_requests_are_not_stalled_by_nagle(plain_app: Service) -> None:
    """Regression: a listening socket created with proto 0 left TCP_NODELAY off and every
    reused connection waited ~40 ms for a delayed ACK."""
    with httpx.Client() as client:
        timings = []
        for _ in range(30):
            started = time.perf_counter()
            client.get(f"{plain_app.url}/hello")
            timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 0.025, f"median {statistics.median(timings) * 1000:.1f} ms"


def test_an_unhandled_error_keeps_the_connection_alive(plain_app: Service) -> None:
    """The 500 is answered by the app; a keep-alive client (a proxy, a load balancer) can
    send its next request on the same connection."""
    with httpx.Client() as client:
        error = client.get(f"{plain_app.url}/error")
        after = client.get(f"{plain_app.url}/hello")
    assert error.status_code == 500
    assert error.json()["error"] == "internal_error"
    assert len(error.json()["trace_id"]) == 32
    assert after.status_code == 200
    assert error.extensions["network_stream"] is after.extensions["network_stream"]


def test_info_reports_which_signals_are_on(tmp_path: object) -> None:
    with fastapi_app({"SENTRY_RELEASE": "1.2.3", "GIT_COMMIT": "abc123"}) as app:
        info = httpx.get(app.url + "/").json()
        metrics = httpx.get(app.url + "/metrics").text
    assert info["version"] == "1.2.3"
    assert info["telemetry"] == {
        "sentry": False,
        "sentry_performance": False,
        "traces": False,
        "logs": False,
        "metrics": True,
        "exemplars": False,
    }
    assert 'app_build_info{commit="abc123",service="fastapi-app",version="1.2.3"} 1.0' in metrics


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SENTRY_TRACES_SAMPLE_RATE", "2"),
        ("SENTRY_SAMPLE_RATE", "-0.1"),
        ("PORT", "not-a-port"),
        ("SENTRY_DSN", "definitely not a dsn"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "tempo:4318"),
        ("DOWNSTREAM_TIMEOUT_SECONDS", "0"),
        ("LOG_LEVEL", "LOUD"),
        ("ACCESS_LOG", "some"),
        ("SENTRY_MAX_EVENTS_PER_SECOND", "-1"),
    ],
)
def test_bad_configuration_stops_start_up_naming_the_variable(variable: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=FASTAPI_DIR,
        env={"PATH": "/usr/bin:/bin", variable: value},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("info", logging.INFO),
        ("INFO", logging.INFO),
        ("Debug", logging.DEBUG),
        ("trace", logging.DEBUG),  # Node's lowest level; Python has none below DEBUG
        ("warn", logging.WARNING),
        ("WARNING", logging.WARNING),
        ("error", logging.ERROR),
        ("critical", logging.CRITICAL),
        ("FATAL", logging.CRITICAL),
    ],
)
def test_log_level_takes_the_usual_spellings_in_any_case(
    value: str, level: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same LOG_LEVEL values as the Node service, so one variable can serve both."""
    from app.settings import load_settings

    monkeypatch.setenv("LOG_LEVEL", value)
    assert load_settings().log_level == level


def test_log_level_warn_keeps_warnings_and_errors_only() -> None:
    with fastapi_app({"LOG_LEVEL": "warn", "ACCESS_LOG": "all"}) as app:
        assert httpx.get(f"{app.url}/hello").status_code == 200
        assert httpx.get(f"{app.url}/error", params={"kind": "handled"}).status_code == 500
    lines = [json.loads(line) for line in app.output().splitlines() if line.startswith("{")]
    assert {line["level"] for line in lines} == {"error"}
    assert "handled deliberate error" in {line["message"] for line in lines}


@pytest.mark.parametrize(
    "path",
    [
        "/hello?name=" + "x" * 65,
        "/hello?name=%3Cscript%3E",
        "/slow?ms=-1",
        "/slow?ms=10001",
        "/slow?ms=abc",
        "/error?kind=explode",
        "/chain?sku=a%2Fb",
    ],
)
def test_bad_parameters_get_400_with_a_json_reason(path: str, plain_app: Service) -> None:
    response = httpx.get(plain_app.url + path)
    assert response.status_code == 400
    body = response.json()
    parameter = path.split("?")[1].split("=")[0]
    assert body["error"] == f"invalid_{parameter}"
    assert body["message"].startswith(f"{parameter}: ")


def test_unknown_paths_do_not_create_metric_series(plain_app: Service) -> None:
    for i in range(20):
        assert httpx.get(f"{plain_app.url}/random/{i}").status_code == 404
    httpx.request("PURGE", f"{plain_app.url}/hello")  # parsed, not one of the app's methods
    # A method the HTTP parser (httptools, like Node's llhttp) does not know never reaches the app.
    assert httpx.request("BREW", f"{plain_app.url}/hello").status_code == 400
    metrics = httpx.get(plain_app.url + "/metrics").text
    assert "/random/" not in metrics and "PURGE" not in metrics and "BREW" not in metrics
    assert 'method="GET",route="<unmatched>",status_class="4xx"} 20.0' in metrics
    assert 'method="_OTHER",route="/hello"' in metrics


def test_slow_does_not_block_other_requests(plain_app: Service) -> None:
    with httpx.Client(timeout=10) as client:
        started = time.perf_counter()
        slow = _in_background(lambda: client.get(f"{plain_app.url}/slow", params={"ms": 2000}))
        time.sleep(0.2)
        fast = client.get(f"{plain_app.url}/hello")
        fast_took = time.perf_counter() - started
        assert slow.result(timeout=10).json() == {"slept_ms": 2000}
    assert fast.status_code == 200
    assert fast_took < 1.5  # served while /slow was still sleeping


def test_sentry_performance_data_is_the_same_trace(sentry: SentryReceiver) -> None:
    """SENTRY_TRACES_SAMPLE_RATE=1 sends the OpenTelemetry spans to Sentry too, same ids."""
    env = {
        "SENTRY_DSN": sentry.dsn,
        "SENTRY_TRACES_SAMPLE_RATE": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    with fastapi_app(env) as app:
        trace_id = httpx.get(f"{app.url}/error", params={"kind": "handled"}).json()["trace_id"]
        wait_for(lambda: sentry.spans(), message="spans on Sentry's OTLP endpoint")
        event = wait_for(lambda: sentry.events(), message="the error event")[0]
    assert {s.trace_id for s in sentry.spans()} == {trace_id}
    assert event["contexts"]["trace"]["trace_id"] == trace_id


def test_no_sentry_performance_data_by_default(sentry: SentryReceiver) -> None:
    with fastapi_app({"SENTRY_DSN": sentry.dsn, "OTEL_BSP_SCHEDULE_DELAY": "100"}) as app:
        httpx.get(f"{app.url}/error", params={"kind": "handled"})
        wait_for(lambda: sentry.events(), message="the error event")
        time.sleep(0.5)
    assert sentry.spans() == []


def test_ignored_errors_are_not_sent(sentry: SentryReceiver) -> None:
    with fastapi_app({"SENTRY_DSN": sentry.dsn, "SENTRY_IGNORE_ERRORS": "DeliberateError"}) as app:
        assert httpx.get(f"{app.url}/error").status_code == 500
        httpx.get(f"{app.url}/chain")  # a ConnectError, not ignored
        wait_for(lambda: sentry.events(), message="the ConnectError event")
    types = {e["exception"]["values"][-1]["type"] for e in sentry.events()}
    assert types == {"ConnectError"}


def _access_lines(output: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "app.access"]


@pytest.mark.parametrize(
    ("sampler", "access_log", "logged_routes"),
    [
        # Default policy: a line for each sampled request, and for every 5xx.
        ("always_off", "sampled", {"/error"}),
        ("always_on", "sampled", {"/hello", "/error"}),
        ("always_off", "all", {"/hello", "/error"}),
    ],
)
def test_access_log_follows_the_trace_sampling_decision(
    sampler: str, access_log: str, logged_routes: set[str]
) -> None:
    env = {"OTEL_TRACES_SAMPLER": sampler, "ACCESS_LOG": access_log}
    with fastapi_app(env) as app:
        for _ in range(3):
            assert httpx.get(f"{app.url}/hello").status_code == 200
        assert httpx.get(f"{app.url}/error").status_code == 500
        metrics = httpx.get(app.url + "/metrics").text
    lines = _access_lines(app.output())  # complete once stopped (stdout is batched)
    assert {line["http_route"] for line in lines} == logged_routes
    assert len(lines) == (4 if "/hello" in logged_routes else 1)
    # Metrics count every request whatever is logged.
    assert 'http_server_requests_total{method="GET",route="/hello",status_class="2xx"} 3.0' in (
        metrics
    )


def test_sentry_events_carry_their_own_request_only(sentry: SentryReceiver) -> None:
    """Each event has the request it was captured in (method, URL, route as transaction, user)
    and only that request's breadcrumbs, even with requests served concurrently."""
    with fastapi_app({"SENTRY_DSN": sentry.dsn}) as app, httpx.Client(timeout=10) as client:
        slow = _in_background(lambda: client.get(f"{app.url}/slow", params={"ms": 500}))
        first = client.get(
            f"{app.url}/error",
            params={"kind": "handled"},
            headers={"X-User-Id": "u-1", "X-Forwarded-For": "203.0.113.9"},
        )
        second = client.get(f"{app.url}/error", headers={"X-User-Id": "u-2"})
        assert slow.result(timeout=10).status_code == 200
        events = wait_for(lambda: len(sentry.events()) >= 2 and sentry.events(), message="2")
    by_user = {event["user"]["id"]: event for event in events}
    assert set(by_user) == {"u-1", "u-2"}
    for user, response in (("u-1", first), ("u-2", second)):
        event = by_user[user]
        assert event["contexts"]["trace"]["trace_id"] == response.json()["trace_id"]
        assert event["transaction"] == "/error"
        assert event["request"]["method"] == "GET"
        assert event["request"]["url"] == f"{app.url}/error"
        crumbs = [
            c for c in event.get("breadcrumbs", {}).get("values", []) if c["category"] == "demo"
        ]
        assert len(crumbs) == 1, crumbs  # the other request's breadcrumb stays out
    assert by_user["u-1"]["request"]["query_string"] == "kind=handled"
    assert by_user["u-1"]["request"]["headers"]["x-forwarded-for"] == "[Filtered]"
    assert "203.0.113.9" not in json.dumps(events)
    # Source lines for the service's own frame, where the error was raised; none for the
    # framework's.
    frames = by_user["u-2"]["exception"]["values"][-1]["stacktrace"]["frames"]
    raising = frames[-1]
    assert raising["in_app"] is True and raising["module"] == "app.main"
    assert "raise DeliberateError" in raising["context_line"]
    assert len(raising["pre_context"]) == 5 and len(raising["post_context"]) == 5
    assert all("context_line" not in f for f in frames if "site-packages" in f["abs_path"])


def test_an_error_storm_sends_at_most_the_event_budget(sentry: SentryReceiver) -> None:
    """Over SENTRY_MAX_EVENTS_PER_SECOND, errors are answered, logged and counted as they
    are, but not built into Sentry events; Sentry learns of the loss from client reports."""
    env = {"SENTRY_DSN": sentry.dsn, "SENTRY_MAX_EVENTS_PER_SECOND": "0.05"}  # 1, then 1/20s
    with fastapi_app(env) as app, httpx.Client(timeout=10) as client:
        responses = [client.get(f"{app.url}/error") for _ in range(4)]
        handled = client.get(f"{app.url}/error", params={"kind": "handled"})
        wait_for(lambda: sentry.events(), message="the first error's event")
        metrics = client.get(f"{app.url}/metrics").text
    assert [r.status_code for r in responses] == [500] * 4
    assert handled.status_code == 500 and "sentry_event_id" not in handled.json()
    events = sentry.events()
    assert len(events) == 1
    assert events[0]["contexts"]["trace"]["trace_id"] == responses[0].json()["trace_id"]
    assert 'telemetry_dropped_total{reason="backpressure",signal="errors"} 4.0' in metrics
    # Every error still has its log line, with its own trace id.
    lines = _access_lines(app.output())
    logged = {line["trace_id"] for line in lines if line["http_status"] == 500}
    assert logged == {r.json()["trace_id"] for r in [*responses, handled]}
    # Sentry is told (client report, sent at shutdown at the latest).
    discarded = [
        entry
        for header, payload in sentry.items()
        if header.get("type") == "client_report"
        for entry in json.loads(payload).get("discarded_events", [])
    ]
    assert {"reason": "backpressure", "category": "error", "quantity": 4} in discarded


def _in_background(call):  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(call)
    pool.shutdown(wait=False)
    return future
