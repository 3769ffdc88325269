"""Sentry's HTTP transport, counting what it loses and telling the outage tracker."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from sentry_sdk.transport import HttpTransport

if TYPE_CHECKING:
    from sentry_sdk.envelope import Envelope, Item

from app.telemetry.metrics import DroppedTelemetry

_SENTRY_ERROR_CATEGORIES = frozenset({"error", "default"})


def counting_transport(dropped: DroppedTelemetry) -> type[HttpTransport]:
    outage = dropped.outage("sentry", "errors")

    class _CountingTransport(HttpTransport):
        # Sentry's default is 30 s; a hanging Sentry should free the worker sooner.
        TIMEOUT = 5

        def on_dropped_event(self, reason: str) -> None:
            # The SDK's hook for an envelope it could not send: "network" (refused, timed
            # out: the error is being handled) or "status_NNN" (Sentry answered an error).
            # A full queue or a rate limit is not Sentry failing.
            if reason == "network":
                error = sys.exception()
                outage.failed(type(getattr(error, "reason", None) or error).__name__)
            elif reason.startswith("status_5"):
                outage.failed(f"HTTP {reason.removeprefix('status_')}")
            super().on_dropped_event(reason)

        def _handle_response(self, response: Any, envelope: Envelope | None) -> None:
            # sentry-sdk 2.75's only place that sees every answer, failed or not.
            super()._handle_response(response, envelope)
            if 200 <= response.status < 300:
                outage.delivered()

        def record_lost_event(
            self,
            reason: str,
            data_category: Any = None,
            item: Item | None = None,
            *,
            quantity: int = 1,
        ) -> None:
            category = item.data_category if item is not None else data_category
            if category in _SENTRY_ERROR_CATEGORIES:
                dropped.add("errors", reason, 1 if item is not None else quantity)
            super().record_lost_event(reason, data_category, item, quantity=quantity)

    return _CountingTransport
