"""Stdout is a telemetry sink too: a reader that stalls must not stall requests."""

from __future__ import annotations

import logging
import threading
import time

from app.telemetry.logs import StdoutHandler
from app.telemetry.metrics import DroppedTelemetry


class _StalledStream:
    """A stdout whose reader stopped reading (a full pipe): write blocks until released."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.written: list[str] = []

    def write(self, text: str) -> None:
        self.released.wait(10)
        self.written.append(text)

    def flush(self) -> None:
        pass


_MAX_LINES = 20


def test_a_stalled_stdout_drops_and_counts_lines_instead_of_blocking() -> None:
    stream, dropped = _StalledStream(), DroppedTelemetry()
    handler = StdoutHandler(stream, dropped, logging.Formatter("%(message)s"), _MAX_LINES)
    slowest = 0.0
    for n in range(200):
        if n == 1:
            time.sleep(0.05)  # let the writer thread take the first line and block on it
        started = time.perf_counter()
        handler.emit(logging.makeLogRecord({"msg": f"line {n}"}))
        slowest = max(slowest, time.perf_counter() - started)
    assert slowest < 0.05, f"a log call waited {slowest * 1000:.0f} ms for stdout"
    lost = dropped.totals()[("logs", "stdout_buffer_full")]
    assert lost >= 200 - 2 * _MAX_LINES

    stream.released.set()
    handler.close()  # writes what is left, in order
    lines = "".join(stream.written).splitlines()
    assert len(lines) + lost == 200
    assert lines == sorted(lines, key=lambda line: int(line.split()[1]))
