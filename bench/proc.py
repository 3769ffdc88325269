"""What the kernel says a server process used: CPU time (all threads) and resident memory."""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the whole process (every thread, live or exited), from
    ``/proc/<pid>/stat`` fields 14 and 15 (proc(5))."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces; the fields after it are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def find_process(pid: int, name: str, timeout: float = 10.0) -> int:
    """The first process below ``pid`` that runs the program ``name``, or ``pid`` itself when
    none does and it runs ``name`` (``npm start`` runs node as a grandchild, and npm is a node
    program itself; the server's CPU is the grandchild's)."""
    deadline = time.monotonic() + timeout
    while True:
        parents: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            parents.setdefault(parent, []).append(int(entry.name))
        queue = list(parents.get(pid, []))
        while queue:
            child = queue.pop(0)
            if _runs(child, name):
                return child
            queue.extend(parents.get(child, []))
        if _runs(pid, name):
            return pid
        if time.monotonic() > deadline:
            raise RuntimeError(f"no process named {name!r} below pid {pid}")
        time.sleep(0.1)


def _runs(pid: int, name: str) -> bool:
    """By command name or by executable: Node 22 and later name their main thread, and with it
    the process's command name, ``MainThread``."""
    try:
        return (
            Path(f"/proc/{pid}/comm").read_text().strip() == name
            or Path(f"/proc/{pid}/exe").readlink().name == name
        )
    except OSError:
        return False
