"""A telemetry backend's outage, logged once as it starts and once as it ends.

While a backend is down every batch and every event fails: a line per failure would put a line
per request on stdout and in Loki (the Sentry transport's retries alone wrote three per event).
Each lost item is counted in ``telemetry_dropped_total``; the log says when delivery stopped,
why, and how much was lost by the time it came back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

_log = logging.getLogger(__name__)


class Outage:
    """Told the outcome of each delivery to one backend; logs only the changes.

    ``dropped`` reads the running count of the backend's signal in telemetry_dropped_total:
    what it grew by between the last delivery before the outage and the first after it is
    what the outage cost.
    """

    def __init__(self, backend: str, dropped: Callable[[], int]) -> None:
        self._backend = backend
        self._dropped = dropped
        self._lock = threading.Lock()
        self._since: float | None = None
        self._dropped_before = 0

    def failed(self, reason: str) -> None:
        with self._lock:
            if self._since is not None:
                return
            self._since = time.time()
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._since))
        _log.warning(
            "%s: delivery failing since %s (%s)",
            self._backend,
            since,
            reason,
            extra={"backend": self._backend, "reason": reason},
        )

    def delivered(self) -> None:
        with self._lock:
            dropped = self._dropped()
            since, self._since = self._since, None
            lost, self._dropped_before = dropped - self._dropped_before, dropped
        if since is not None:
            _log.info(
                "%s: delivery recovered after %d dropped",
                self._backend,
                lost,
                extra={
                    "backend": self._backend,
                    "dropped": lost,
                    "outage_seconds": round(time.time() - since, 1),
                },
            )
