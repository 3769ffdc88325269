"""Bad input, as a fuzzer sends it, against both sample services running for real, every signal on.

- FastAPI: schemathesis generates valid and invalid requests from the service's own OpenAPI
  schema; hypothesis sends random methods, raw paths, query strings and propagation headers.
- Node: hypothesis sends the same kind of random requests, and random SKUs to /inventory/:sku
  whose answers must follow the documented contract.

What must hold for every request: no 5xx except the deliberate ``/error`` (and ``/chain``'s
documented 502/503/504: its downstream is down here); invalid input answered with 4xx. And after
the fuzzing: the process still serves, wrote nothing but JSON log lines (a traceback printed
outside the logging set-up, a "Logging error" or an unhandled rejection would show), and
``/metrics`` gained no series labelled with raw paths or query values.

Example counts are bounded and derandomized (the same inputs every run, no example database),
so the module takes well under a minute.
"""

from __future__ import annotations

import http.client
import json
import re
import shlex
import string
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from receivers import OtlpReceiver, SentryReceiver
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
from services import NODE_DIR, Service, fastapi_app, free_port, run_service, telemetry_env

SCHEMA_EXAMPLES = 25  # per operation and generation mode (valid / invalid)
RANDOM_EXAMPLES = 150
SKU_EXAMPLES = 100
UNMATCHED = "<unmatched>"
STATUS_CLASSES = {"1xx", "2xx", "3xx", "4xx", "5xx"}
# Labels whose values come from the runtime, never from a request (GC kinds, heap spaces, ...).
_RUNTIME_LABELS = {"le", "quantile", "kind", "space", "generation", "reason", "signal", "type"}


@dataclass(frozen=True)
class Contract:
    """What a service may answer and which metric label values it may create."""

    routes: frozenset[str]  # route templates, as the `route` label shows them
    methods: frozenset[str]  # `method` label values, unknown methods included
    allowed_5xx: dict[str, frozenset[int]]  # path -> 5xx it may answer to GET/HEAD

    def check_status(
        self, method: str, target: str, status: int, body: str, headers: object = None
    ) -> None:
        path = unquote(target.split("?", 1)[0])
        if status >= 500:
            allowed = self.allowed_5xx.get(path, frozenset()) if method in ("GET", "HEAD") else ()
            sent = f" with headers {headers}" if headers else ""
            assert status in allowed, f"{method} {target}{sent} -> {status}: {body[:500]}"


FASTAPI = Contract(
    routes=frozenset({"/", "/health", "/ready", "/hello", "/slow", "/error", "/chain", "/metrics"}),
    methods=frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "_OTHER"}),
    allowed_5xx={"/error": frozenset({500}), "/chain": frozenset({502, 503, 504})},
)
NODE = Contract(
    routes=frozenset(
        {"/", "/health", "/ready", "/metrics", "/targets", "/inventory/:sku", "/error"}
    ),
    methods=frozenset(
        {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "_OTHER"}
    ),
    allowed_5xx={"/error": frozenset({500})},
)
CATALOG = {"SB-1001", "SB-1002", "SB-1003", "SB-1004", "SB-1005"}
SKU_PATTERN = re.compile(r"[A-Za-z0-9-]{1,32}")


# --- random requests ------------------------------------------------------------------------

# Method tokens, valid or not. CONNECT and PRI are left out: they switch the connection to
# another protocol instead of answering.
METHOD_TOKENS = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "OPTIONS",
    "TRACE",
    "PROPFIND",
    "FOO",
    "get",
]
# What may appear raw in a request target (http.client refuses controls, spaces and non-ASCII).
_RAW = "".join(c for c in string.printable if c not in " \t\n\r\x0b\x0c?#")


def _segment() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet=_RAW, min_size=1, max_size=40),
        st.text(min_size=1, max_size=40).map(lambda text: quote(text, safe="")),
        st.sampled_from([".", "..", "%", "%zz", "%00", "%2F", "%C0%AF", "~", ";x=1", "a" * 300]),
    )


def _paths(routes: Iterable[str]) -> st.SearchStrategy[str]:
    """Known routes, known routes with junk appended, and paths made of random segments."""
    known = st.sampled_from(sorted(r.replace(":sku", "SB-1001") for r in routes))
    segments = st.lists(_segment(), min_size=1, max_size=4).map("/".join)
    return st.one_of(
        known,
        st.tuples(known, segments).map(lambda pair: pair[0].rstrip("/") + "/" + pair[1]),
        segments.map(lambda path: "/" + path),
        segments.map(lambda path: "//" + path),
    )


def _query_values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet=_RAW.replace("&", ""), max_size=30),
        st.text(max_size=30).map(lambda text: quote(text, safe="")),
        st.sampled_from(["", "-1", "0", "10001", "1e9", "NaN", "null", "%", "a" * 2000]),
    )


def _queries(keys: Iterable[str]) -> st.SearchStrategy[str]:
    pairs = st.lists(
        st.tuples(st.one_of(st.sampled_from(sorted(keys)), _segment()), _query_values()),
        max_size=4,
    )
    return st.one_of(
        st.just(""), pairs.map(lambda items: "?" + "&".join(f"{k}={v}" for k, v in items))
    )


_HEX = "0123456789abcdef"


def _headers() -> st.SearchStrategy[dict[str, str]]:
    """Trace propagation and user headers: well-formed, with parts missing or malformed, or
    junk. Each part of a header is drawn separately, so every partial form comes up."""
    hex_id = st.one_of(
        st.text(alphabet=_HEX, min_size=32, max_size=32),
        st.text(alphabet=_HEX, min_size=16, max_size=16),
        st.just("0" * 32),
        st.text(alphabet=_HEX + "xyzXYZ", max_size=34),
    )
    part = st.one_of(st.just(""), hex_id, st.sampled_from(["0", "1", "00", "01", "ff", "2"]))
    dashed = st.lists(part, min_size=1, max_size=4).map("-".join)
    junk = st.text(alphabet=string.printable[:95], max_size=200)  # printable, no CR/LF
    return st.dictionaries(
        st.sampled_from(["traceparent", "tracestate", "sentry-trace", "baggage", "x-user-id"]),
        st.one_of(dashed, junk),
        max_size=3,
    )


def _send(service: Service, method: str, target: str, headers: dict[str, str]) -> tuple[int, str]:
    """One request with exactly this method and request target (httpx would normalise both)."""
    url = urlsplit(service.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=15)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def _fuzz_random_requests(service: Service, contract: Contract, query_keys: Iterable[str]) -> None:
    before = _series(service.url)

    @settings(
        max_examples=RANDOM_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        st.one_of(st.just("GET"), st.sampled_from(METHOD_TOKENS)),
        _paths(contract.routes),
        _queries(query_keys),
        _headers(),
    )
    def check(method: str, path: str, query: str, headers: dict[str, str]) -> None:
        status, body = _send(service, method, path + query, headers)
        contract.check_status(method, path + query, status, body, headers)

    # Every route at least once, as documented, besides whatever is generated.
    for route in contract.routes:
        check = example("GET", route.replace(":sku", "SB-1001"), "", {})(check)
    check()
    _assert_bounded_series(before, _series(service.url), contract)


# --- metrics and output ---------------------------------------------------------------------

Series = frozenset[tuple[str, str]]


def _series(base_url: str) -> dict[str, set[Series]]:
    """Every series on /metrics by family (histogram buckets folded into one series)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    families: dict[str, set[Series]] = {}
    for family in text_string_to_metric_families(text):
        labelsets = families.setdefault(family.name, set())
        for sample in family.samples:
            labelsets.add(frozenset((k, v) for k, v in sample.labels.items() if k != "le"))
    return families


def _assert_bounded_series(
    before: dict[str, set[Series]], after: dict[str, set[Series]], contract: Contract
) -> None:
    """New series only use label values from the service's fixed vocabulary, and no more of
    them can exist than methods x routes x status classes."""
    vocabulary = {
        "route": contract.routes | {UNMATCHED},
        "method": contract.methods,
        "status_class": STATUS_CLASSES,
    }
    new: list[tuple[str, Series]] = []
    for name, labelsets in after.items():
        new += [(name, labels) for labels in labelsets - before.get(name, set())]
    for name, labels in new:
        for key, value in labels:
            if key in vocabulary:
                assert value in vocabulary[key], f"{name}: {key}={value!r} is not a known {key}"
            else:
                assert key in _RUNTIME_LABELS, f"{name}: new label value {key}={value!r}"
    http_series = {labels for name, labels in new if name.startswith("http_server_")}
    bound = len(contract.methods) * (len(contract.routes) + 1) * len(STATUS_CLASSES)
    assert len(http_series) <= bound, f"{len(http_series)} new HTTP series, bound {bound}"


def _assert_clean_output(
    service: Service, expected_error: Callable[[dict[str, object]], bool]
) -> None:
    """Still serving, and every line written is a JSON log record; error records are only the
    expected ones."""
    assert service.process.poll() is None, service.output()[-3000:]
    assert httpx.get(f"{service.url}/health", timeout=5).status_code == 200
    time.sleep(0.2)  # the FastAPI service writes stdout in batches every 20 ms
    output = service.output()
    complete = output[: output.rfind("\n") + 1]  # a line being written is read next time
    stray = []
    for line in complete.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            stray.append(line)
            continue
        level = str(record.get("level", "")).lower()
        if level in ("error", "critical", "fatal", "50", "60") and not expected_error(record):
            stray.append(line)
    assert not stray, f"{len(stray)} unexpected lines, the first:\n" + "\n".join(
        line[:1500] for line in stray[:3]
    )


# --- FastAPI --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fastapi_service() -> Iterator[Service]:
    with OtlpReceiver() as otlp, SentryReceiver() as sentry:
        env = telemetry_env(
            "fastapi-app",
            otlp,
            sentry,
            # Nothing listens there: /chain answers 503, as documented.
            DOWNSTREAM_URL=f"http://127.0.0.1:{free_port()}",
        )
        with fastapi_app(env) as app:
            yield app


# Longer delays answer correctly but would eat the time budget (the service's own tests cover
# them); out-of-range values are still sent as generated.
_MAX_SLOW_MS = 20


def _bounded_delay(case: schemathesis.Case[Any]) -> None:
    if case.path == "/slow" and isinstance(case.query, dict):
        ms = case.query.get("ms")
        if ms is None or (isinstance(ms, int) and 0 <= ms <= 10_000):
            case.query["ms"] = min(ms or 0, _MAX_SLOW_MS)


def test_fastapi_schema_fuzz(fastapi_service: Service) -> None:
    """Every operation of the service's OpenAPI schema, with valid and with invalid input."""
    schema = schemathesis.openapi.from_url(f"{fastapi_service.url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the schema has an invalid operation: {result.err()}"
        operations.append(result.ok())
    session = requests.Session()  # keep-alive: the fuzzing budget goes to requests, not handshakes
    paths = {op.path for op in operations}
    assert paths >= {"/hello", "/slow", "/error", "/chain"}, f"documented routes missing: {paths}"
    for operation in operations:
        modes = [schemathesis.GenerationMode.POSITIVE]
        if operation.query or operation.path_parameters or operation.headers:
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:

            @settings(
                max_examples=SCHEMA_EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case[Any]) -> None:
                _bounded_delay(case)
                response = case.call(base_url=fastapi_service.url, session=session, timeout=15)
                FASTAPI.check_status(
                    case.method, case.formatted_path, response.status_code, response.text
                )
                case.validate_response(
                    response,
                    checks=[
                        content_type_conformance,
                        response_headers_conformance,
                        response_schema_conformance,
                        # Not negative_data_rejection: the schema's `\w` means ASCII to a JSON
                        # Schema validator (ECMA-262) but Unicode letters to the service, which
                        # greets "José" on purpose; it would flag that as invalid input accepted.
                    ],
                )

            check()


def test_fastapi_random_requests(fastapi_service: Service) -> None:
    _fuzz_random_requests(fastapi_service, FASTAPI, ("name", "ms", "kind", "sku"))


def test_fastapi_survived_the_fuzzing(fastapi_service: Service) -> None:
    def expected(record: dict[str, object]) -> bool:
        # The deliberate errors and the unreachable downstream, nothing else.
        message = str(record.get("message", ""))
        return record.get("http_route") in FASTAPI.allowed_5xx or any(
            word in message for word in ("deliberate", "downstream")
        )

    _assert_clean_output(fastapi_service, expected)


# --- Node -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_service() -> Iterator[Service]:
    # package.json's start command, run directly: stopping `npm start` leaves node running.
    manifest = json.loads((NODE_DIR / "package.json").read_text())
    command = shlex.split(manifest["scripts"]["start"])
    with OtlpReceiver() as otlp, SentryReceiver() as sentry:
        env = telemetry_env("api", otlp, sentry, MONITOR_TARGETS="none")
        with run_service(command, NODE_DIR, env, timeout=60.0) as node:
            yield node


def test_node_random_requests(node_service: Service) -> None:
    _fuzz_random_requests(node_service, NODE, ("kind", "sku"))


@settings(max_examples=SKU_EXAMPLES, derandomize=True, database=None, deadline=None)
@given(
    st.one_of(
        st.sampled_from(sorted(CATALOG)),
        st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=40),
        st.text(min_size=1, max_size=40),
    )
)
def test_node_inventory_follows_its_contract(node_service: Service, sku: str) -> None:
    status, body = _send(node_service, "GET", "/inventory/" + quote(sku, safe=""), {})
    if sku in CATALOG:
        assert status == 200 and json.loads(body)["sku"] == sku, body
    elif SKU_PATTERN.fullmatch(sku):
        assert status == 404 and json.loads(body) == {"error": "not_found", "sku": sku}, body
    else:
        assert status == 400 and json.loads(body)["error"] == "invalid_sku", (status, body)


def test_node_survived_the_fuzzing(node_service: Service) -> None:
    def expected(record: dict[str, object]) -> bool:
        return record.get("http_route") == "/error" or "deliberate" in json.dumps(record)

    _assert_clean_output(node_service, expected)
