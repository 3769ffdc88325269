"""/chain: the trace crosses to the downstream service, and downstream failures are clear."""

from __future__ import annotations

import secrets
import socket

import httpx
import pytest
from receivers import OtlpReceiver, SentryReceiver, wait_for
from services import fastapi_app, free_port
from stubs import InventoryStub

SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3


def test_chain_propagates_one_trace_in_both_header_styles(
    otlp: OtlpReceiver, telemetry_env: dict[str, str]
) -> None:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    with (
        InventoryStub() as downstream,
        fastapi_app({**telemetry_env, "DOWNSTREAM_URL": downstream.url}) as app,
    ):
        response = httpx.get(
            f"{app.url}/chain",
            params={"sku": "SB-1002"},
            headers={"traceparent": f"00-{trace_id}-{parent}-01"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["inventory"]["sku"] == "SB-1002"
        assert response.json()["trace_id"] == trace_id

        outgoing = downstream.requests[0]
        assert outgoing["path"] == "/inventory/SB-1002"
        assert outgoing["traceparent"].split("-")[1] == trace_id
        assert outgoing["sentry-trace"].split("-")[0] == trace_id
        client_span_id = outgoing["traceparent"].split("-")[2]

        client_span = wait_for(
            lambda: next(
                (
                    s
                    for s in otlp.spans()
                    if s.kind == SPAN_KIND_CLIENT and s.span_id == client_span_id
                ),
                None,
            ),
            message="the outgoing client span",
        )
        assert client_span.trace_id == trace_id
        # The downstream's server span will be a child of this client span: the trace crosses.
        assert outgoing["sentry-trace"].split("-")[1] == client_span_id


@pytest.mark.parametrize(
    ("downstream_status", "hang", "expected", "captured"),
    [
        (404, False, 404, False),
        (500, False, 502, True),
        (None, False, 503, True),  # nothing listening: connection refused
        (200, True, 504, True),  # accepts, never answers
    ],
)
def test_chain_maps_downstream_failures(
    downstream_status: int | None,
    hang: bool,
    expected: int,
    captured: bool,
    sentry: SentryReceiver,
    telemetry_env: dict[str, str],
) -> None:
    env = {**telemetry_env, "DOWNSTREAM_TIMEOUT_SECONDS": "0.5"}
    if downstream_status is None:
        closed_port = free_port()
        with fastapi_app({**env, "DOWNSTREAM_URL": f"http://127.0.0.1:{closed_port}"}) as app:
            response = httpx.get(f"{app.url}/chain", timeout=10)
    else:
        with (
            InventoryStub(downstream_status, hang) as downstream,
            fastapi_app({**env, "DOWNSTREAM_URL": downstream.url}) as app,
        ):
            response = httpx.get(f"{app.url}/chain", timeout=10)
    output = app.output()  # complete once the service has stopped (stdout is batched)

    assert response.status_code == expected, response.text
    body = response.json()
    assert body["error"]
    if captured:
        trace_id = body["trace_id"]
        event = wait_for(
            lambda: next(
                (e for e in sentry.events() if e["contexts"]["trace"]["trace_id"] == trace_id), None
            ),
            message="the downstream failure in Sentry",
        )
        assert event["contexts"]["details"]["sku"] == "SB-1001"
        assert body["sentry_event_id"] == event["event_id"]
        assert trace_id in output and '"level": "error"' in output


def test_chain_rejects_bad_sku_without_calling_downstream(telemetry_env: dict[str, str]) -> None:
    with (
        InventoryStub() as downstream,
        fastapi_app({**telemetry_env, "DOWNSTREAM_URL": downstream.url}) as app,
    ):
        response = httpx.get(f"{app.url}/chain", params={"sku": "../../etc/passwd"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_sku"
    assert downstream.requests == []  # no request reached the downstream


def test_unused_port_helper_really_refuses() -> None:
    port = free_port()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))
