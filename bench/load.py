"""The load generator: ``wrk`` with a small Lua script, pinned to its own core.

wrk keeps a fixed number of connections busy (closed loop), so the server runs flat out and the
CPU it spends per completed request is the cost of one request. The script cycles through a
list of paths (a mix is 9 x ``/hello`` + 1 x ``/error``, in that order, so the share is exact)
and prints one JSON line with the counts and latency percentiles wrk measured.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

CONNECTIONS = 16
# A request slower than this counts as a wrk timeout; far above any healthy latency here, and
# above the 5 s export timeout a request blocked on telemetry would wait.
TIMEOUT_S = 10

_MARK = "BENCH_RESULT "
_LUA = """
local paths = {%(paths)s}
local n = #paths
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i - 1) %% n + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, '
    .. '"status": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    non_2xx: int  # answered with a status >= 400 (wrk counts these as "status" errors)
    socket_errors: int  # connect/read/write errors and timeouts: requests that got no answer
    p50_ms: float
    p99_ms: float
    max_ms: float


def wrk_version() -> str:
    """wrk prints its version in the first line of its usage text."""
    if shutil.which("wrk") is None:
        return "not installed"
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()[:1]
    return first[0].split(" Copyright")[0].removeprefix("wrk ").strip() if first else "?"


def run_wrk(
    base_url: str,
    paths: Sequence[str],
    seconds: float,
    cpu: int | None = None,
    prefix: Sequence[str] = (),
) -> LoadResult:
    """Drive ``base_url`` for ``seconds`` with wrk, one thread, ``CONNECTIONS`` connections."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: run `make setup-system` (apt-get install wrk)")
    lua_paths = ", ".join(json.dumps(path) for path in paths)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-") as script:
        script.write(_LUA % {"paths": lua_paths, "mark": _MARK})
        script.flush()
        command = [
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={TIMEOUT_S}s",
            "-s",
            script.name,
            base_url,
        ]
        if cpu is not None:
            command = ["taskset", "-c", str(cpu), *command]
        command = [*prefix, *command]
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=seconds + 60
        )
    line = next((x for x in done.stdout.splitlines() if x.startswith(_MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix(_MARK))
    return LoadResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        non_2xx=raw["status"],
        socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )
