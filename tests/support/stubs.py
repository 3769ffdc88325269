"""A stand-in for the Node service's inventory endpoint, for tests of the FastAPI /chain call.

It follows the Node contract (examples/api, GET /inventory/:sku): 400 JSON for a malformed sku,
200 {"sku", "name", "in_stock"} for SB-1001..SB-1005, 404 {"error": "not_found", "sku"} for any
other. A test can make it misbehave the way a real downstream does, and see what it was sent.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from receivers import send_json

CATALOG = frozenset(f"SB-100{i}" for i in range(1, 6))
_SKU = re.compile(r"[A-Za-z0-9-]{1,32}")


class InventoryStub:
    """GET /inventory/{sku} on a free loopback port, while used as a context manager.

    Switches, settable at any time:
    - ``status``: answer every sku with this status (200: the item; others: an error body);
    - ``hang``: accept and never answer, until the stub closes;
    - ``down``: drop every connection unanswered, as a crashed service would.
    ``requests``: each request's headers (lower-case names) plus its ``path``.
    """

    def __init__(self, status: int | None = None, hang: bool = False) -> None:
        self.status = status
        self.hang = hang
        self.down = False
        self.requests: list[dict[str, str]] = []
        self._release = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                stub.requests.append(headers | {"path": self.path})
                if stub.down:
                    self.close_connection = True
                    return
                if stub.hang:
                    stub._release.wait(30)
                    return
                status, body = stub._answer(self.path.rsplit("/", 1)[-1])
                send_json(self, status, json.dumps(body).encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _answer(self, sku: str) -> tuple[int, dict[str, Any]]:
        found = {"sku": sku, "name": "Signal lamp", "in_stock": 3}
        if self.status == 200:
            return 200, found
        if self.status is not None:
            return self.status, {"error": "not_found" if self.status == 404 else "internal"}
        if not _SKU.fullmatch(sku):
            return 400, {"error": "invalid_sku", "sku": sku}
        if sku in CATALOG:
            return 200, found
        return 404, {"error": "not_found", "sku": sku}

    def __enter__(self) -> InventoryStub:
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
