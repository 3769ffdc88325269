"""Stopping the service as containers and Railway do: SIGTERM (SIGINT from a terminal), then
SIGKILL after a grace period. A stop must end as a clean run: requests in flight answered,
telemetry flushed within a bound, one line saying so, exit code 0."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import services
from receivers import OtlpReceiver, SentryReceiver, wait_for
from services import fastapi_app

# The slow request in flight plus the 3 s flush bound, with room for a busy machine.
STOP_BOUND_S = 8.0


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_stop_signal_drains_flushes_logs_it_and_exits_0(
    stop_signal: signal.Signals, otlp: OtlpReceiver, sentry: SentryReceiver
) -> None:
    # Batches are due only after a minute: what reaches the receivers was flushed by the stop.
    env = services.telemetry_env(
        "fastapi-app",
        otlp,
        sentry,
        OTEL_BSP_SCHEDULE_DELAY="60000",
        OTEL_BLRP_SCHEDULE_DELAY="60000",
    )
    with (
        fastapi_app(env) as app,
        httpx.Client(timeout=15) as client,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        handled = client.get(f"{app.url}/error", params={"kind": "handled"}).json()
        in_flight = pool.submit(client.get, f"{app.url}/slow", params={"ms": 1000})
        time.sleep(0.3)  # the request has arrived and sleeps
        started = time.monotonic()
        os.kill(app.process.pid, stop_signal)
        code = app.process.wait(STOP_BOUND_S)
        took = time.monotonic() - started
        answered = in_flight.result(timeout=5)

    assert code == 0, app.output()[-2000:]
    assert took < STOP_BOUND_S
    assert answered.status_code == 200, "the request in flight was not answered"

    lines = [json.loads(line) for line in app.output().splitlines() if line.startswith("{")]
    summary = next(line for line in lines if line["message"].startswith("telemetry flushed"))
    assert summary in lines[-3:], "the flush line is not among the last lines"
    assert summary["flushed"] == ["traces", "logs", "sentry"]
    assert summary["not_flushed"] == []
    assert summary["dropped"] == {"traces": 0, "logs": 0, "errors": 0}

    # What the stop flushed did arrive.
    routes = {span.attributes.get("http.route") for span in otlp.spans()}
    assert {"/error", "/slow"} <= routes
    assert any(record.body == "handled deliberate error" for record in otlp.log_records())
    event = wait_for(lambda: sentry.events(), message="the handled error's event")[0]
    assert event["contexts"]["trace"]["trace_id"] == handled["trace_id"]
