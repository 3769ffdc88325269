"""Instructions per request, counted by Valgrind's callgrind: the figure the verdicts use.

CPU time per request on a shared virtual machine moves by a third from one minute to the next,
more than the margins the targets are judged by. The number of instructions a server executes
for a request does not depend on what else the machine is doing: repeat counts agree within
~0.2% for a bare server and a few per cent for an instrumented one (garbage collection, JIT).

How one count is made (``count``):

1. The server runs under ``valgrind --tool=callgrind --instr-atstart=no``: the whole process,
   every thread (exporters, Sentry's worker, the event loop, V8's helpers) on one counter, and
   nothing counted yet, so start-up runs at Valgrind's uninstrumented speed and is left out.
2. A load generator outside Valgrind (``drive``: a few keep-alive connections, this process)
   warms the server up with requests that are not counted (imports, caches, Node's JIT).
3. ``callgrind_control -i on`` then ``-z`` start the count from zero; ``N`` requests are sent;
   ``callgrind_control -d`` dumps the count. Twice: the first window shows whether the server
   had settled, the second is the figure. Instructions per request = the dump's total / N.

Valgrind runs the server ~50x slower. Work done on a timer (a batch exported every 5 s, stdout
flushed every 20 ms) therefore falls on fewer requests' worth of time than at full speed and
weighs more per request; docs/bench.md says how much.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

_TOTALS = re.compile(r"^(?:totals|summary):\s+(\d+)", re.MULTILINE)
CONNECTIONS = 4
# Valgrind's start-up of a Python or Node server with its telemetry can take a minute on a
# busy machine (uninstrumented, but every instruction still goes through its JIT once).
READY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Window:
    instructions: int
    requests: int
    non_2xx: int
    seconds: float  # how long the counted requests took under Valgrind

    @property
    def per_request(self) -> float:
        return self.instructions / max(1, self.requests)


@dataclass(frozen=True)
class Count:
    """Two windows of the same size, one after the other: the second is the figure, the first
    shows whether the server had settled (Node's JIT and heap sizing take tens of thousands of
    requests to; a first window well above the second says the warm-up was too short)."""

    settling: Window
    measured: Window

    @property
    def per_request(self) -> float:
        return self.measured.per_request

    @property
    def seconds(self) -> float:
        return self.measured.seconds


def available() -> str | None:
    """Why callgrind cannot run here, or None when it can."""
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: run `make setup-system` (apt-get install valgrind)"
    return None


def command(server: Sequence[str], out_dir: Path) -> list[str]:
    """``server`` under callgrind, counting nothing until told to."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        # Node generates machine code at run time (V8's JIT), and rewrites some of it in place.
        "--smc-check=all-non-file",
        f"--callgrind-out-file={out_dir}/callgrind.out.%p",
        "--quiet",
        *server,
    ]


def drive(base_url: str, paths: Sequence[str], requests: int) -> int:
    """Send exactly ``requests`` GETs over ``CONNECTIONS`` keep-alive connections, cycling
    through ``paths`` in order (so a 9:1 mix is exactly 10% ``/error``); the number answered
    with a status >= 400. A request that gets no answer at all raises."""
    non_2xx = 0
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker(first: int) -> None:
        nonlocal non_2xx
        mine = 0
        try:
            with httpx.Client(base_url=base_url, timeout=120.0) as client:
                for i in range(first, requests, CONNECTIONS):
                    if client.get(paths[i % len(paths)]).status_code >= 400:
                        mine += 1
        except httpx.HTTPError as exc:
            failures.append(exc)
        with lock:
            non_2xx += mine

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"callgrind load: a request to {base_url} got no answer: {failures[0]}")
    return non_2xx


def _control(pid: int, *args: str) -> None:
    done = subprocess.run(
        ["callgrind_control", *args, str(pid)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"callgrind_control {' '.join(args)} {pid} failed:\n{done.stdout}{done.stderr}"
        )


def read_total(dump: Path) -> int:
    """The instruction count of one callgrind output file (its ``totals:`` or ``summary:``
    line; the event is ``Ir``, instructions executed, callgrind's default)."""
    found = _TOTALS.search(dump.read_text(errors="replace"))
    if found is None:
        raise RuntimeError(f"{dump}: no totals line (not a callgrind output file?)")
    return int(found.group(1))


def _window(pid: int, base_url: str, paths: Sequence[str], requests: int, out: Path) -> Window:
    before = set(out.glob(f"callgrind.out.{pid}*"))
    _control(pid, "--zero")
    started = time.monotonic()
    non_2xx = drive(base_url, paths, requests)
    seconds = time.monotonic() - started
    _control(pid, "--dump")
    new = sorted(set(out.glob(f"callgrind.out.{pid}*")) - before)
    if not new:
        raise RuntimeError(f"callgrind wrote no dump for pid {pid} in {out}")
    return Window(read_total(new[-1]), requests, non_2xx, seconds)


def count(
    pid: int, base_url: str, paths: Sequence[str], warmup: int, requests: int, out: Path
) -> Count:
    """Warm the server up with ``warmup`` uncounted requests, then count the instructions of two
    windows of ``requests`` each. Can be called more than once on the same server."""
    drive(base_url, paths, warmup)
    _control(pid, "--instr=on")
    try:
        settling = _window(pid, base_url, paths, requests, out)
        measured = _window(pid, base_url, paths, requests, out)
    finally:
        _control(pid, "--instr=off")
    return Count(settling, measured)


@contextlib.contextmanager
def out_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as name:
        yield Path(name)
