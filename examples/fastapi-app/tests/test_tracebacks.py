"""Tracebacks: what Python prints (column markers aside), exception groups included, scrubbed
in every output; and a reminder to re-measure the custom formatter when Python changes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import traceback

from receivers import SentryReceiver, wait_for
from services import FASTAPI_DIR

from app.scrub import FILTERED
from app.telemetry.tracebacks import format_traceback

_MARKERS = re.compile(r"^[ |]*[\^~]+ *$")


def test_python_minor_version_is_the_one_the_formatter_was_measured_on() -> None:
    assert sys.version_info[:2] == (3, 11), (
        "app/telemetry/tracebacks.py copies CPython 3.11's traceback format and was measured "
        "against it: re-run its comparison with traceback.TracebackException (docstring) and "
        "the tests below on the new version, then update this pin, or drop the module"
    )


def _group() -> BaseException:
    def charge() -> None:
        raise ValueError("payment failed for alice@example.com")

    def reserve() -> None:
        raise RuntimeError("inventory failed, note=call 555-12-3456")

    errors: list[Exception] = []
    for step in (charge, reserve):
        try:
            step()
        except Exception as error:
            errors.append(error)
    try:
        raise ExceptionGroup("checkout failed", errors)
    except ExceptionGroup as group:
        return group


def test_an_exception_group_is_printed_with_every_sub_exception() -> None:
    group = _group()
    ours = format_traceback(group)
    python = "".join(traceback.format_exception(group))
    assert ours.splitlines() == [line for line in python.splitlines() if not _MARKERS.match(line)]
    assert "ValueError: payment failed for alice@example.com" in ours
    assert "RuntimeError: inventory failed, note=call 555-12-3456" in ours


_SCRIPT = textwrap.dedent(
    """
    import asyncio

    import httpx

    from app import telemetry
    from app.settings import load_settings

    settings = load_settings()
    active = telemetry.setup(settings)
    from app.main import create_app

    app = create_app(settings, active)

    @app.get("/checkout")
    async def checkout() -> None:
        errors = []
        for message in ("payment failed for alice@example.com",
                        "inventory failed, note=call 555-12-3456"):
            try:
                raise ValueError(message)
            except ValueError as error:
                errors.append(error)
        raise ExceptionGroup("checkout failed", errors)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/checkout")
        assert response.status_code == 500, response.text

    asyncio.run(main())
    active.shutdown()
    """
)


def test_an_unhandled_exception_group_reaches_the_log_line_and_sentry_scrubbed(
    sentry: SentryReceiver,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        cwd=FASTAPI_DIR,
        env={"PATH": "/usr/bin:/bin", "SENTRY_DSN": sentry.dsn},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "alice@example.com" not in done.stdout and "555-12-3456" not in done.stdout
    (line,) = [json.loads(x) for x in done.stdout.splitlines() if '"http_route": "/checkout"' in x]
    assert f"ValueError: payment failed for {FILTERED}" in line["exc_info"]
    assert "ValueError: inventory failed, note=call" in line["exc_info"]
    assert "ExceptionGroup: checkout failed (2 sub-exceptions)" in line["exc_info"]

    (event,) = wait_for(lambda: sentry.events(), message="the group's Sentry event")
    values = {v["type"]: v for v in event["exception"]["values"] if v["type"] != "ValueError"}
    messages = [v["value"] for v in event["exception"]["values"] if v["type"] == "ValueError"]
    assert "ExceptionGroup" in values
    assert f"payment failed for {FILTERED}" in messages
    assert any(m.startswith("inventory failed, note=call") for m in messages)
    assert "alice@example.com" not in json.dumps(event)
    assert "555-12-3456" not in json.dumps(event)
