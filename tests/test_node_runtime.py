"""The Node service runs on the supported Node (24 LTS; Node 20 reached end of life in April 2026).

One version, pinned in scripts/install-node.sh (which `make setup-node` installs into .tools/),
is the one the tests start the service on, the one the image is built from and one that
package.json's `engines` accepts.
"""

from __future__ import annotations

import json
import re

import httpx
from services import NODE_DIR, node_api, pinned_node_version

PINNED = pinned_node_version()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_npm_start_in_the_tests_runs_the_pinned_node() -> None:
    # prom-client's nodejs_version_info names the Node that serves /metrics.
    with node_api({"MONITOR_TARGETS": "none"}) as api:
        metrics = httpx.get(f"{api.url}/metrics", timeout=10).text
    found = re.search(r'^nodejs_version_info\{version="v([\d.]+)"', metrics, re.MULTILINE)
    assert found, metrics[:2000]
    assert found[1] == PINNED, f"the service ran on Node {found[1]}, not the pinned {PINNED}"


def test_the_image_and_engines_agree_with_the_pinned_node() -> None:
    assert _version(PINNED)[0] == 24
    dockerfile = (NODE_DIR / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(node:\S+)", dockerfile, re.MULTILINE)
    assert bases, "no node base image in the Dockerfile"
    assert all(base.startswith(f"node:{PINNED}-") for base in bases), bases
    engines = json.loads((NODE_DIR / "package.json").read_text())["engines"]["node"]
    minimum = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)", engines)
    assert minimum, f"engines.node {engines!r}: expected a minimum version"
    # Node 20 and 22 are refused, the pinned version is accepted.
    assert _version(minimum[1])[0] == 24 and _version(minimum[1]) <= _version(PINNED)
