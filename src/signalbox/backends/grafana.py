"""Grafana: up, token accepted, and every provisioned datasource healthy.

APIs (https://grafana.com/docs/grafana/latest/developers/http_api/):
- ``GET /api/health`` -> ``{"database": "ok", "version": "...", "commit": "..."}`` (no auth).
- ``GET /api/datasources`` -> list of datasources (needs ``datasources:read``; a Viewer
  service account gets 403, and then only the stack's fixed uids are checked).
- ``GET /api/datasources/uid/{uid}/health`` -> 200 ``{"status": "OK", "message": ...}`` or
  400 ``{"status": "ERROR", "message": ...}`` (data_source/#check-data-source-health).
- ``/api/datasources/proxy/uid/{uid}/...`` forwards to the datasource's own API
  (data_source/#data-source-proxy-calls): Tempo, Loki and Prometheus are read through it.
Errors are JSON with ``message``: 401 ``{"message": "Invalid API key", "messageId":
"api-key.invalid", ...}``, 403 ``{"message": "You'll need additional permissions ...
Permissions needed: datasources:read", ...}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from signalbox.backends._http import (
    BackendError,
    Endpoint,
    decode_json,
    error_message,
    send,
    status_error,
)

CREDENTIAL = "GRAFANA_TOKEN (a service-account token with the Viewer role)"


def endpoint(grafana_url: str, token: str) -> Endpoint:
    return Endpoint(
        backend="grafana",
        base_url=grafana_url,
        label="Grafana",
        headers={"Authorization": f"Bearer {token}"},
        credential=CREDENTIAL,
    )


def proxy(grafana: Endpoint, backend: str, uid: str) -> Endpoint:
    """Reach ``backend``'s own API through Grafana, so only Grafana needs to be public."""
    return Endpoint(
        backend=backend,
        base_url=grafana.url(f"/api/datasources/proxy/uid/{uid}"),
        label=f"{backend.capitalize()} through Grafana (datasource uid {uid!r})",
        via="grafana",
        headers=grafana.headers,
        credential=grafana.credential,
    )


@dataclass(frozen=True)
class Datasource:
    uid: str
    type: str = ""
    name: str = ""
    # False for a Sentry datasource provisioned without an organization: Sentry not set up.
    configured: bool = True


@dataclass(frozen=True)
class Health:
    uid: str
    state: str  # "ok" | "error" | "missing" | "unsupported"
    message: str


async def check_up(client: httpx.AsyncClient, grafana: Endpoint) -> str:
    response = await send(client, grafana, "/api/health")
    body = decode_json(grafana, response) if response.status_code in (200, 503) else None
    if response.status_code not in (200, 503) or not isinstance(body, dict):
        raise status_error(grafana, response)
    version = body.get("version", "unknown version")
    if body.get("database") != "ok":
        raise BackendError(
            f"Grafana {version} reports database {body.get('database')!r}", fatal=False
        )
    return f"Grafana {version} is up (database ok)"


async def list_datasources(client: httpx.AsyncClient, grafana: Endpoint) -> list[Datasource] | None:
    """Every datasource, or None when the token may query but not list them (Viewer role)."""
    response = await send(client, grafana, "/api/datasources")
    if response.status_code == 403:
        return None
    if response.status_code != 200:
        raise status_error(grafana, response)
    body = decode_json(grafana, response)
    if not isinstance(body, list):
        raise BackendError(f"Grafana /api/datasources answered {type(body).__name__}", fatal=True)
    return [_datasource(item) for item in body if isinstance(item, dict) and item.get("uid")]


async def check_datasource(client: httpx.AsyncClient, grafana: Endpoint, uid: str) -> Health:
    response = await send(client, grafana, f"/api/datasources/uid/{uid}/health")
    code = response.status_code
    if code in (200, 400):
        body = decode_json(grafana, response)
        if isinstance(body, dict) and "status" in body:
            state = "ok" if body.get("status") == "OK" else "error"
            return Health(uid, state, str(body.get("message", "")).strip())
    reason = error_message(response)
    if code == 404 and "not implemented" in reason.lower():
        return Health(uid, "unsupported", "the plugin has no health check")
    # Grafana answers 500 "Unable to load datasource metadata" for an unknown uid (404 in
    # some versions).
    if code == 404 or (code == 500 and "datasource metadata" in reason.lower()):
        return Health(uid, "missing", f"Grafana has no datasource with uid {uid!r}")
    raise status_error(grafana, response)


def known(uids: Iterable[str]) -> list[Datasource]:
    return [Datasource(uid) for uid in uids]


def _datasource(item: dict[str, Any]) -> Datasource:
    kind = str(item.get("type", ""))
    configured = True
    if kind == "grafana-sentry-datasource":
        configured = bool((item.get("jsonData") or {}).get("orgSlug"))
    return Datasource(str(item["uid"]), kind, str(item.get("name", "")), configured)
