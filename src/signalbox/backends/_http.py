"""One place that turns HTTP outcomes into messages a person can act on."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

_BODY_EXCERPT = 200


class BackendError(Exception):
    """A backend could not answer. ``fatal``: retrying until the deadline cannot fix it."""

    def __init__(self, message: str, *, fatal: bool) -> None:
        super().__init__(message)
        self.fatal = fatal


@dataclass(frozen=True)
class Lookup:
    """The answer to one poll: found or not, and what was seen (for the report)."""

    found: bool
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """Where a backend's API is reached, and how to explain failures there.

    ``base_url`` is the product's API root: the backend itself, or Grafana's datasource proxy
    (``{grafana}/api/datasources/proxy/uid/{uid}``), which forwards the rest of the path.
    ``label`` names it in messages; ``credential`` names the setting to fix on 401/403.
    """

    backend: str
    base_url: str
    label: str
    via: str = "direct"
    headers: Mapping[str, str] = field(default_factory=dict)
    credential: str = ""

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


async def send(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    path: str,
    *,
    method: str = "GET",
    params: Any = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Send one request; transport failures become ``BackendError`` with a readable reason."""
    url = endpoint.url(path)
    try:
        return await client.request(
            method,
            url,
            params=params,
            json=json_body,
            headers={**endpoint.headers, **(headers or {})},
        )
    except httpx.ConnectTimeout:
        # Nothing accepted the connection: a host that is down or a port that is filtered.
        raise BackendError(
            f"cannot connect to {endpoint.label} at {_strip(url)}: no connection within "
            f"{client.timeout.connect} s",
            fatal=True,
        ) from None
    except httpx.TimeoutException:
        # Connected, but the answer is slow: a busy backend may do better on the next poll.
        raise BackendError(
            f"{endpoint.label} did not answer within {_timeout(client)} s ({_strip(url)})",
            fatal=False,
        ) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise BackendError(f"bad URL {_strip(url)}: {exc}", fatal=True) from None
    except httpx.TransportError as exc:
        raise connection_error(endpoint.label, url, exc) from None


async def request_json(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    path: str,
    *,
    method: str = "GET",
    params: Any = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    ok_statuses: Collection[int] = (200,),
    none_on_404: bool = False,
) -> Any:
    """Call ``endpoint`` and return its decoded JSON body, or raise a ``BackendError``.

    ``none_on_404``: a 404 means "not there yet" (Tempo answers 404 for an unknown trace id).
    """
    response = await send(
        client, endpoint, path, method=method, params=params, json_body=json_body, headers=headers
    )
    if response.status_code == 404 and none_on_404:
        return None
    if response.status_code not in ok_statuses:
        raise status_error(endpoint, response)
    return decode_json(endpoint, response)


def decode_json(endpoint: Endpoint, response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        content_type = response.headers.get("content-type", "unknown")
        raise BackendError(
            f"{_strip(str(response.request.url))} answered {response.status_code} with "
            f"{content_type}, not JSON: is this URL really {endpoint.label}? "
            f"({excerpt(response.text)!r})",
            fatal=True,
        ) from None


def connection_error(label: str, url: str, exc: httpx.TransportError) -> BackendError:
    """Whether waiting can help: only once a backend is reachable.

    A name that does not resolve, a refused or unreachable address, a TLS failure: fatal at
    once, naming the address, since polling such a backend until the deadline only delays the
    answer. A connection that broke after it was made (reset, closed mid-answer) may be a
    restart and is retried.
    """
    if _caused_by(exc, socket.gaierror):
        host = httpx.URL(url).host
        return BackendError(
            f"cannot resolve host {host!r} for {label} ({_strip(url)}): check the URL", fatal=True
        )
    reason = str(exc) or type(exc).__name__
    if _caused_by(exc, ssl.SSLError):
        # A certificate problem does not go away by waiting.
        return BackendError(f"TLS failed for {label} at {_strip(url)}: {reason}", fatal=True)
    if isinstance(exc, httpx.ConnectError):
        return BackendError(f"cannot connect to {label} at {_strip(url)}: {reason}", fatal=True)
    return BackendError(f"connection to {label} at {_strip(url)} failed: {reason}", fatal=False)


def status_error(endpoint: Endpoint, response: httpx.Response) -> BackendError:
    code = response.status_code
    reason = error_message(response)
    where = f"{endpoint.label} ({_strip(str(response.request.url))})"
    if code == 401:
        fix = f": check {endpoint.credential}" if endpoint.credential else ""
        return BackendError(f"{where} rejected the credentials (401 {reason}){fix}", fatal=True)
    if code == 403:
        fix = f": give {endpoint.credential} the needed role/scopes" if endpoint.credential else ""
        return BackendError(f"{where} refused access (403 {reason}){fix}", fatal=True)
    if code == 404:
        return BackendError(f"{where} answered 404 {reason}: wrong URL or path prefix?", fatal=True)
    # Rate limits, overload and proxy errors pass; anything else will not change by waiting.
    transient = code == 429 or code >= 500
    return BackendError(f"{where} answered {code} {reason}", fatal=not transient)


def error_message(response: httpx.Response) -> str:
    """The product's own words: Grafana ``message``, Sentry ``detail``, Prometheus ``error``."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = excerpt(response.text)
        return text or response.reason_phrase
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return excerpt(response.text)


def excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _BODY_EXCERPT else text[: _BODY_EXCERPT - 1] + "…"


def _strip(url: str) -> str:
    """The URL without its query string: enough to locate a problem, and never a secret."""
    return url.split("?", 1)[0]


def _timeout(client: httpx.AsyncClient) -> float | None:
    return client.timeout.read


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
