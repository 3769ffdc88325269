"""Checks a YAML configuration against a versioned key schema (src/signalbox/schemas/).

A schema lists every key the pinned release accepts (generated from that release's reference
documents by scripts/gen-config-schemas.py), the keys that older releases accepted but the
pinned one refuses at start-up, and the keys (or values) it still accepts but has deprecated.
Unknown and removed keys are errors: Loki and Tempo refuse them. Deprecated ones are warnings:
the component starts, but the next release may not.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class KeyProblem:
    path: str
    message: str
    warning: bool = False  # accepted today (deprecated): reported without failing the check


@dataclass
class KeySchema:
    product: str
    version: str
    keys: dict[str, Any]
    removed: dict[str, dict[str, str]] = field(default_factory=dict)
    deprecated: dict[str, dict[str, str]] = field(default_factory=dict)
    upgrade_guide: str = ""
    generated_from: str = ""

    def check(self, document: Any) -> tuple[list[KeyProblem], int]:
        """Problems in ``document`` and the number of keys that were checked."""
        problems: list[KeyProblem] = []
        counter = [0]
        self._walk(document, self.keys, "", problems, counter)
        return problems, counter[0]

    def _walk(
        self,
        value: Any,
        schema: Any,
        path: str,
        problems: list[KeyProblem],
        counter: list[int],
    ) -> None:
        if schema is None:
            return  # a scalar, or a map the schema does not describe further
        if isinstance(value, list):
            item_schema = schema.get("[]") if isinstance(schema, dict) else None
            for index, item in enumerate(value):
                self._walk(item, item_schema, f"{path}[{index}]", problems, counter)
            return
        if not isinstance(value, dict):
            return
        for key, child in value.items():
            key = str(key)
            child_path = f"{path}.{key}" if path else key
            counter[0] += 1
            removed = self.removed.get(_generic(child_path))
            if removed and _matches_value(removed, child):
                problems.append(KeyProblem(child_path, self._removed_message(removed)))
                continue
            if key not in schema and "*" not in schema:
                problems.append(KeyProblem(child_path, self._unknown_message(key, schema)))
                continue
            deprecated = self.deprecated.get(_generic(child_path))
            if deprecated and _matches_value(deprecated, child):
                problems.append(
                    KeyProblem(child_path, self._deprecated_message(deprecated), warning=True)
                )
            self._walk(child, schema.get(key, schema.get("*")), child_path, problems, counter)

    def _removed_message(self, removed: dict[str, str]) -> str:
        guide = f" ({self.upgrade_guide})" if self.upgrade_guide else ""
        return (
            f"refused by {self.product} {self.version} (removed in {removed.get('since', '?')}): "
            f"{removed.get('hint', '')}{guide}"
        )

    def _deprecated_message(self, deprecated: dict[str, str]) -> str:
        return (
            f"deprecated in {self.product} {deprecated.get('since', '?')}, still accepted by "
            f"{self.version}: {deprecated.get('hint', '')}"
        )

    def _unknown_message(self, key: str, schema: dict[str, Any]) -> str:
        known = [k for k in schema if k not in ("*", "[]")]
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"unknown key for {self.product} {self.version}{hint}"


def load(name: str) -> KeySchema:
    """The packaged schema ``name`` (e.g. ``loki-3.7``); FileNotFoundError if there is none."""
    text = resources.files("signalbox").joinpath("schemas", f"{name}.yaml").read_text()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return _from_document(yaml.load(text, Loader=loader))  # noqa: S506 - a safe loader


def load_file(path: Path) -> KeySchema:
    return _from_document(yaml.safe_load(path.read_text()))


def _from_document(document: dict[str, Any]) -> KeySchema:
    return KeySchema(
        product=str(document["product"]).capitalize(),
        version=str(document["version"]),
        keys=document["keys"],
        removed={entry["path"]: entry for entry in document.get("removed") or []},
        deprecated={entry["path"]: entry for entry in document.get("deprecated") or []},
        upgrade_guide=str(document.get("upgrade_guide") or ""),
        generated_from=str(document.get("generated_from") or ""),
    )


def _generic(path: str) -> str:
    """``schema_config.configs[0].index`` -> ``schema_config.configs.index`` (list-agnostic)."""
    return re.sub(r"\[\d+\]", "", path)


def _matches_value(removed: dict[str, str], value: Any) -> bool:
    only = removed.get("only_values")
    return not only or str(value) in only.split(",")


_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", re.IGNORECASE | re.MULTILINE)


def image_minor_version(dockerfile: Path, image: str) -> str | None:
    """``3.7`` for ``FROM grafana/loki:3.7.8`` in ``dockerfile`` (the last stage using image)."""
    versions = []
    for reference in _FROM.findall(dockerfile.read_text()):
        name, _, tag = reference.partition(":")
        if name.removeprefix("docker.io/") == image and tag:
            match = re.match(r"v?(\d+)\.(\d+)", tag)
            if match:
                versions.append(f"{match[1]}.{match[2]}")
    return versions[-1] if versions else None


def check_component(
    root: Path,
    check: str,
    folder: str,
    config_name: str,
    image: str,
    semantic: Any = None,
) -> list[Any]:
    """The findings for one component folder: version pin <-> schema, keys, semantic rules.

    ``semantic(document) -> list[KeyProblem]`` adds product rules the key set cannot express.
    """
    from signalbox.report import Finding

    dockerfile = root / folder / "Dockerfile"
    config = root / folder / config_name
    location = f"{folder}/{config_name}"
    if not dockerfile.is_file() or not config.is_file():
        return [Finding.failed(check, f"missing {folder}/Dockerfile or {location}", folder)]
    minor = image_minor_version(dockerfile, image)
    if minor is None:
        return [
            Finding.failed(
                check, f"{folder}/Dockerfile does not build FROM {image}:<x.y.z>", folder
            )
        ]
    product = image.rsplit("/", 1)[-1]
    try:
        schema = load(f"{product}-{minor}")
    except FileNotFoundError:
        return [
            Finding.failed(
                check,
                f"no key schema for {product} {minor} (the Dockerfile's version); regenerate "
                "with scripts/gen-config-schemas.py",
                location,
            )
        ]
    try:
        document = yaml.safe_load(config.read_text())
    except yaml.YAMLError as exc:
        return [Finding.failed(check, f"not valid YAML: {exc}", location)]
    if not isinstance(document, dict):
        return [Finding.failed(check, "not a YAML mapping", location)]
    problems, checked = schema.check(document)
    if semantic is not None:
        problems.extend(semantic(document))
    findings = []
    for p in problems:
        report = Finding.warning if p.warning else Finding.failed
        findings.append(report(check, p.message, f"{location}: {p.path}"))
    if any(not p.warning for p in problems):
        return findings
    return [
        *findings,
        Finding.passed(
            check,
            f"{checked} keys valid for {schema.product} {schema.version} "
            f"(schema from {schema.generated_from})",
            location,
        ),
    ]


def get(document: Any, path: str, default: Any = None) -> Any:
    """``get(doc, "a.b.c")``; ``default`` when any step is missing or not a mapping."""
    node = document
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
