"""The shared contract (examples/contract.yaml), checked against this service running for real.

The Node service's suite (examples/api/test/contract.test.mjs) checks the same file against
that service: every case below comes from the file, so a rule changed there fails both suites
until both services follow it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from receivers import OtlpReceiver, SentryReceiver, Span, wait_for
from services import FASTAPI_DIR, REPO, Service, fastapi_app

SERVICE = "fastapi-app"
CONTRACT: dict[str, Any] = yaml.safe_load((REPO / "examples" / "contract.yaml").read_text())
SPAN_KIND_SERVER = 2


def _ours(value: Any) -> Any:
    """A value the contract gives per service (a mapping by service name), or the shared one."""
    return value[SERVICE] if isinstance(value, dict) and SERVICE in value else value


def _ids() -> dict[str, str]:
    return {
        "trace_id": secrets.token_hex(16),
        "span_id": secrets.token_hex(8),
        "other_trace_id": secrets.token_hex(16),
        "other_span_id": secrets.token_hex(8),
    }


def _headers(template: dict[str, str] | None, ids: dict[str, str]) -> dict[str, str]:
    return {name: value.format(**ids) for name, value in (template or {}).items()}


def _case_id(case: dict[str, Any]) -> str:
    return str(case.get("name") or _ours(case.get("path")))


def _lines(service: Service) -> list[dict[str, Any]]:
    """Complete stdout lines, parsed (the service writes them in batches every 20 ms)."""
    output = service.output()
    return [json.loads(line) for line in output[: output.rfind("\n") + 1].splitlines() if line]


# --- the service under test -----------------------------------------------------------------


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def sentry() -> Iterator[SentryReceiver]:
    with SentryReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def served(otlp: OtlpReceiver, sentry: SentryReceiver) -> Iterator[Service]:
    """Every signal on, sent to the loopback receivers through the BASE OTLP endpoint, and an
    access line for every request (so unsampled requests can be seen too)."""
    env = {
        "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "SENTRY_DSN": sentry.dsn,
        "ACCESS_LOG": "all",
    }
    with fastapi_app(env) as app:
        yield app


@pytest.fixture(scope="module")
def alone() -> Iterator[Service]:
    """Started as its README's "Run it alone" says: no telemetry variables at all."""
    with fastapi_app({}) as app:
        yield app


# --- metrics --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONTRACT["metrics"]))
def test_metric_names_labels_and_buckets(served: Service, name: str) -> None:
    rule = CONTRACT["metrics"][name]
    httpx.get(f"{served.url}/")  # the request metrics exist once a request was served
    families = {
        f"{f.name}_total" if f.type == "counter" else f.name: f
        for f in text_string_to_metric_families(httpx.get(f"{served.url}/metrics").text)
    }
    assert name in families, f"{name} is not on /metrics"
    family = families[name]
    assert family.type == rule["type"]
    suffix = {"counter": "_total", "histogram": "_bucket", "gauge": ""}[rule["type"]]
    samples = [s for s in family.samples if s.name == family.name + suffix]
    assert samples, f"{name} has no series"
    for sample in samples:
        assert set(sample.labels) - {"le"} == set(rule["labels"]), sample
    if "buckets" in rule:
        one = samples[0].labels
        bounds = [
            float(s.labels["le"])
            for s in samples
            if {k: v for k, v in s.labels.items() if k != "le"}
            == {k: v for k, v in one.items() if k != "le"}
        ]
        assert bounds == [*map(float, rule["buckets"]), float("inf")]


def test_dropped_telemetry_series_exist_from_start(alone: Service) -> None:
    text = httpx.get(f"{alone.url}/metrics").text
    present = {
        (sample.labels.get("signal"), sample.labels.get("reason"))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "telemetry_dropped_total"
    }
    for series in CONTRACT["metrics"]["telemetry_dropped_total"]["at_start"]:
        assert (series["signal"], series["reason"]) in present, series


# --- logs -----------------------------------------------------------------------------------


def test_every_stdout_line_is_a_json_record_with_the_shared_fields(served: Service) -> None:
    rules = CONTRACT["logs"]
    for path in ("/", "/error", "/error?kind=handled", "/no/such/route"):
        httpx.get(served.url + path)
    time.sleep(0.1)
    lines = _lines(served)
    assert len(lines) > 5
    for line in lines:
        missing = [f for f in rules["every_line"] if f not in line]
        assert not missing, f"{missing} missing from {line}"
        assert re.fullmatch(rules["time"], line["time"]), line
        assert line["level"] in rules["levels"], line
        assert line["service"] == SERVICE
        if line.get("trace_id"):
            for field, pattern in rules["in_a_trace"].items():
                assert re.fullmatch(pattern, line[field]), line


@pytest.mark.parametrize("path", ["/", "/error?kind=bogus", "/error"])
def test_access_line_fields_and_level(served: Service, path: str) -> None:
    rules = CONTRACT["logs"]["access_line"]
    trace_id = secrets.token_hex(16)
    response = httpx.get(
        served.url + path, headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    )
    line = wait_for(
        lambda: next(
            (
                line
                for line in _lines(served)
                if line.get("trace_id") == trace_id and "http_route" in line
            ),
            None,
        ),
        message=f"the access line of {path}",
    )
    assert {f: line.get(f) is not None for f in rules["fields"]} == dict.fromkeys(
        rules["fields"], True
    )
    assert line["http_status"] == response.status_code
    assert line["http_route"] == path.split("?")[0]
    assert line["level"] == rules["level"][f"{response.status_code // 100}xx"]


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("served", {"sentry", "traces", "logs", "metrics", "exemplars"}),
        ("alone", {"metrics"}),
    ],
)
def test_startup_line_says_which_telemetry_is_on(
    request: pytest.FixtureRequest, fixture: str, expected: set[str]
) -> None:
    rule = CONTRACT["startup_line"]
    service: Service = request.getfixturevalue(fixture)
    line = next(
        (
            line
            for line in _lines(service)
            if str(line.get("message", "")).startswith(rule["message_starts_with"])
        ),
        None,
    )
    assert line is not None, service.output()[:2000]
    telemetry = line[rule["field"]]
    assert sorted(telemetry) == sorted(rule["keys"])
    assert {key for key, on in telemetry.items() if on} == expected
    assert (rule["exemplars_off_reason"] in line["message"]) is (not telemetry["exemplars"])


# --- HTTP answers ---------------------------------------------------------------------------


def _assert_error_body(body: Any, code: str) -> None:
    rule = CONTRACT["http"]["error_body"]
    assert isinstance(body, dict), body
    assert all(isinstance(body.get(field), str) and body[field] for field in rule["required"])
    assert re.fullmatch(rule["code"], body["error"]), body
    assert body["error"] == code, body


@pytest.mark.parametrize("case", CONTRACT["http"]["bad_input"], ids=_case_id)
def test_bad_input_answer(served: Service, case: dict[str, Any]) -> None:
    response = httpx.get(served.url + _ours(case["path"]))
    assert response.status_code == case["status"], response.text
    _assert_error_body(response.json(), _ours(case["error"]))


@pytest.mark.parametrize("case", CONTRACT["http"]["server_errors"], ids=_case_id)
def test_server_error_answer(served: Service, sentry: SentryReceiver, case: dict[str, Any]) -> None:
    rules = CONTRACT["http"]
    response = httpx.get(served.url + case["path"])
    assert response.status_code == case["status"]
    body = response.json()
    _assert_error_body(body, case["error"])
    assert re.fullmatch("[0-9a-f]{32}", body[rules["trace_id_field"]]), body
    event_id = body.get(rules["event_id_field"])
    assert event_id, f"no {rules['event_id_field']} in {body}"
    event = wait_for(
        lambda: next((e for e in sentry.events() if e.get("event_id") == event_id), None),
        message=f"Sentry event {event_id}",
    )
    assert event["contexts"]["trace"]["trace_id"] == body[rules["trace_id_field"]]


@pytest.mark.parametrize("path", CONTRACT["http"]["head"]["paths"])
def test_head_on_get_routes(served: Service, path: str) -> None:
    response = httpx.head(served.url + path)
    assert response.status_code == CONTRACT["http"]["head"]["status"]
    assert response.content == b""


# --- privacy --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONTRACT["scrub"]["cases"], ids=_case_id)
def test_scrubbed_from_every_output(
    served: Service, otlp: OtlpReceiver, sentry: SentryReceiver, case: dict[str, Any]
) -> None:
    base = CONTRACT["scrub"]["path"]
    url = served.url + base + (f"&{case['query']}" if case.get("query") else "")
    # The raw query string as sent: httpx would re-encode it.
    response = httpx.get(httpx.URL(url), headers=case.get("headers") or {})
    trace_id = response.json()["trace_id"]

    event = wait_for(
        lambda: next(
            (e for e in sentry.events() if e["contexts"]["trace"]["trace_id"] == trace_id), None
        ),
        message="the Sentry event",
    )
    span = wait_for(
        lambda: next((s for s in otlp.spans() if s.trace_id == trace_id), None),
        message="the server span",
    )
    records = wait_for(
        lambda: [r for r in otlp.log_records() if r.trace_id == trace_id],
        message="the OTLP log records",
    )
    wait_for(lambda: trace_id in served.output(), message="the stdout lines")
    # What the request carried was recorded, so scrubbing is what kept the values out.
    assert "kind=handled" in str(span.attributes.get("url.query"))
    assert event["request"]["headers"]

    outputs = {
        "Sentry event": json.dumps(event),
        "span": json.dumps({"attributes": span.attributes, "events": span.events}),
        "OTLP log records": json.dumps([(r.body, r.attributes) for r in records], default=str),
        "stdout": served.output(),
    }
    for where, text in outputs.items():
        for forbidden in case["forbidden"]:
            assert forbidden not in text, f"{forbidden!r} reached the {where}"


# --- configuration --------------------------------------------------------------------------


def _invalid_cases() -> Iterator[Any]:
    for name, rule in CONTRACT["environment"].items():
        for invalid in rule.get("invalid", []):
            value, extra = (
                (invalid["value"], invalid.get("with", {}))
                if isinstance(invalid, dict)
                else (invalid, {})
            )
            yield pytest.param(name, value, extra, id=f"{name}={value}")


@pytest.mark.parametrize(("name", "value", "extra"), list(_invalid_cases()))
def test_a_bad_variable_stops_start_up_naming_it(
    name: str, value: str, extra: dict[str, str]
) -> None:
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update({"PORT": "0", **extra, name: value})
    try:
        result = subprocess.run(
            [sys.executable, "-m", "app"],
            cwd=FASTAPI_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name}={value!r} was accepted: the service started")
    assert result.returncode == 2, result.stderr
    assert name in result.stderr, result.stderr


@pytest.mark.parametrize("name", sorted(CONTRACT["environment"]))
def test_readme_documents_the_variable(name: str) -> None:
    rule = CONTRACT["environment"][name]
    readme = (REPO / CONTRACT["services"][SERVICE]["readme"]).read_text()
    row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}` |")), None)
    assert row is not None, f"no README row for {name}"
    default = row.split("|")[2]
    if rule["default"] is None:
        assert "unset" in default, row
    else:
        assert f"`{rule['default']}`" in default, row
    if "unit" in rule:
        assert rule["unit"] in row, row


def test_export_timeout_is_in_milliseconds() -> None:
    rule = CONTRACT["export_timeout_check"]
    with OtlpReceiver(mode="hang") as hanging:
        env = {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": hanging.traces_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_EXPORTER_OTLP_TIMEOUT": str(rule["OTEL_EXPORTER_OTLP_TIMEOUT"]),
        }
        with fastapi_app(env) as app:
            httpx.get(f"{app.url}/")
            sent = time.monotonic()

            def dropped() -> float:
                text = httpx.get(f"{app.url}/metrics").text
                return sum(
                    sample.value
                    for family in text_string_to_metric_families(text)
                    for sample in family.samples
                    if sample.name == "telemetry_dropped_total"
                    and sample.labels["signal"] == "traces"
                )

            wait_for(dropped, timeout=15, interval=0.05, message="the span counted as dropped")
            elapsed_ms = (time.monotonic() - sent) * 1000
    assert rule["dropped_after_ms"]["min"] <= elapsed_ms <= rule["dropped_after_ms"]["max"]


# --- propagation ----------------------------------------------------------------------------


def _server_span(otlp: OtlpReceiver, marker: str) -> Span | None:
    return next(
        (
            s
            for s in otlp.spans()
            if s.kind == SPAN_KIND_SERVER and marker in str(s.attributes.get("url.query"))
        ),
        None,
    )


@pytest.mark.parametrize("case", CONTRACT["propagation"]["cases"], ids=_case_id)
def test_propagation(served: Service, otlp: OtlpReceiver, case: dict[str, Any]) -> None:
    ids = _ids()
    marker = secrets.token_hex(6)
    response = httpx.get(
        f"{served.url}{CONTRACT['propagation']['path']}?case={marker}",
        headers=_headers(case["headers"], ids),
    )
    assert response.status_code == 200, response.text
    if case["sampled"]:
        span = wait_for(lambda: _server_span(otlp, marker), message="the exported server span")
        assert (span.trace_id == ids["trace_id"]) is case["continued"], span
        assert span.parent_span_id == (ids["span_id"] if case["continued"] else ""), span
    else:
        assert case["continued"], "an unsampled case is about a continued trace"
        wait_for(
            lambda: any(line.get("trace_id") == ids["trace_id"] for line in _lines(served)),
            message="the access line with the continued trace id",
        )
        # Spans leave in order: once a later request's span arrived, this one would have too.
        sentinel = secrets.token_hex(6)
        httpx.get(f"{served.url}{CONTRACT['propagation']['path']}?case={sentinel}")
        wait_for(lambda: _server_span(otlp, sentinel), message="a later request's span")
        assert _server_span(otlp, marker) is None, "an unsampled trace was exported"


# --- exemplars ------------------------------------------------------------------------------


def _exemplars(service: Service, route: str) -> set[str]:
    rule = CONTRACT["exemplars"]
    text = httpx.get(
        f"{service.url}/metrics", headers={"Accept": "application/openmetrics-text"}
    ).text
    return {
        sample.exemplar.labels[rule["label"]]
        for family in openmetrics_families(text)
        if family.name == rule["metric"]
        for sample in family.samples
        if sample.exemplar is not None and sample.labels.get("route") == route
    }


def _exemplar_cases() -> Iterator[Any]:
    for setting in ("with_traces_endpoint", "without_traces_endpoint"):
        for case in CONTRACT["exemplars"][setting]:
            headers = ",".join(case.get("headers", {}))
            yield pytest.param(
                setting, case, id=f"{setting}:{case['path']}{':' + headers if headers else ''}"
            )


@pytest.mark.parametrize(("setting", "case"), list(_exemplar_cases()))
def test_exemplars(request: pytest.FixtureRequest, setting: str, case: dict[str, Any]) -> None:
    service: Service = request.getfixturevalue(
        "served" if setting == "with_traces_endpoint" else "alone"
    )
    ids = _ids()
    route = case["path"].split("?")[0]
    response = httpx.get(service.url + case["path"], headers=_headers(case.get("headers"), ids))
    body = response.json()
    trace_id = body.get("trace_id") if isinstance(body, dict) else None
    exemplars = _exemplars(service, route)
    if case["exemplar"]:
        assert trace_id in exemplars
    elif trace_id is not None:
        assert trace_id not in exemplars
    else:
        assert exemplars == set()
    if setting == "without_traces_endpoint":
        assert exemplars == set()
