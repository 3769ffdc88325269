"""The helpers application code uses: background errors reach Sentry, monitored work is traced."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from receivers import OtlpReceiver, SentryReceiver, wait_for
from services import FASTAPI_DIR

_SCRIPT = textwrap.dedent(
    """
    import asyncio
    from app import telemetry
    from app.settings import load_settings

    active = telemetry.setup(load_settings())
    assert telemetry.setup(load_settings()) is active  # idempotent
    from app.observe import capture_errors, monitored

    @monitored
    async def reconcile(batch: int) -> int:
        return batch * 2

    @capture_errors(reraise=False)
    @monitored
    async def nightly_job() -> None:
        await reconcile(21)
        raise ValueError("ledger out of balance")

    @capture_errors(reraise=True)
    async def strict_job() -> None:
        raise KeyError("missing")

    async def main() -> None:
        assert await nightly_job() is None  # swallowed, reported
        try:
            await strict_job()
        except KeyError:
            print("reraised")

    asyncio.run(main())
    active.shutdown()
    """
)


def test_background_errors_are_reported_and_monitored_work_is_traced(
    otlp: OtlpReceiver, sentry: SentryReceiver
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        cwd=FASTAPI_DIR,
        env={
            "PATH": "/usr/bin:/bin",
            "SENTRY_DSN": sentry.dsn,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.traces_endpoint,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "reraised" in result.stdout

    events = wait_for(lambda: len(sentry.events()) >= 2 and sentry.events(), message="2 events")
    by_type = {e["exception"]["values"][-1]["type"]: e for e in events}
    assert set(by_type) == {"ValueError", "KeyError"}
    nightly = by_type["ValueError"]
    assert nightly["contexts"]["details"]["task"].endswith("nightly_job")

    spans = {s.name: s for s in otlp.spans()}
    job, child = spans["nightly_job"], spans["reconcile"]
    assert child.parent_span_id == job.span_id and child.trace_id == job.trace_id
    # The error event belongs to the job's trace.
    assert nightly["contexts"]["trace"]["trace_id"] == job.trace_id


def _chained_error() -> BaseException:
    def lookup() -> None:
        {}["missing"]

    def handle() -> None:
        try:
            lookup()
        except KeyError as error:
            raise ValueError("lookup failed") from error

    try:
        try:
            handle()
        except ValueError:
            raise RuntimeError("while handling")  # noqa: B904 - an implicit context on purpose
    except RuntimeError as error:
        return error
    raise AssertionError("unreachable")


def test_format_traceback_prints_what_python_prints_without_column_markers() -> None:
    import re
    import traceback

    from app.telemetry import format_traceback

    error = _chained_error()
    ours = format_traceback(error)
    python = "".join(traceback.format_exception(error))
    markers = re.compile(r"^\s*[\^~]+\s*$")
    assert ours.splitlines() == [line for line in python.splitlines() if not markers.match(line)]
    assert "The above exception was the direct cause" in ours
    assert "During handling of the above exception" in ours
    assert '{}["missing"]' in ours  # source lines are kept


def test_format_traceback_shortens_recursion_as_python_does() -> None:
    import traceback

    from app.telemetry import format_traceback

    def recurse(depth: int) -> None:
        if depth == 0:
            raise RecursionError("deep enough")
        recurse(depth - 1)

    try:
        recurse(20)
    except RecursionError as error:
        ours = format_traceback(error)
        python = "".join(traceback.format_exception(error))
    assert "[Previous line repeated 17 more times]" in ours
    assert ours.splitlines() == [line for line in python.splitlines() if line.strip("^~ ")]
