"""The key-schema generator (scripts/gen-config-schemas.py) and the schemas it produced."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from signalbox.checks import _keyschema

REPO = Path(__file__).resolve().parents[1]

_LOKI_DOC = """\
### Supported contents and default values of `loki.yaml`

```yaml
# Comment lines are skipped.
[target: <string> | default = "all"]

[server: <server>]

schema_config:
  [configs: <list of period_configs>]

limits_config:
  [retention_period: <duration> | default = 0s]
  [labels: <map of string to string>]
```

### period_config

```yaml
[from: <daytime>]

index:
  [period: <duration>]
```

### server

```yaml
[http_listen_port: <int> | default = 3100]

[<tls_config>]
```

### tls_config

```yaml
[cert_file: <string> | default = ""]
```
"""


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen", REPO / "scripts" / "gen-config-schemas.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loki_reference_is_parsed_into_a_key_tree(tmp_path: Path) -> None:
    doc = tmp_path / "docs" / "sources" / "shared" / "configuration.md"
    doc.parent.mkdir(parents=True)
    doc.write_text(_LOKI_DOC)
    tree = _generator()._loki_tree(tmp_path)
    assert tree == {
        "target": None,
        "server": {"http_listen_port": None, "cert_file": None},  # squashed block merged in
        "schema_config": {"configs": {"[]": {"from": None, "index": {"period": None}}}},
        "limits_config": {"retention_period": None, "labels": {"*": None}},
    }


def test_packaged_schemas_know_the_keys_the_stack_uses_and_refuse_removed_ones() -> None:
    loki = _keyschema.load("loki-3.7")
    assert _keyschema.get(loki.keys, "compactor")["delete_request_store"] is None
    assert "retention_period" in loki.keys["limits_config"]
    assert "limits_config.enforce_metric_name" in loki.removed
    tempo = _keyschema.load("tempo-3.0")
    assert "block_retention" in tempo.keys["backend_worker"]["compaction"]
    assert "trace_id_label_name" in tempo.keys["overrides"]["defaults"]["metrics_generator"]
    for removed in ("ingester", "compactor", "ingester_client"):
        assert removed in tempo.removed
        assert removed not in tempo.keys, f"{removed} is removed in Tempo 3.0"


def _tempo_problems(document: dict[str, object]) -> list[tuple[str, bool]]:
    problems, _ = _keyschema.load("tempo-3.0").check(document)
    return [(p.path, p.warning) for p in problems]


def test_tempo_schema_accepts_what_3_0_3_still_accepts_with_a_warning() -> None:
    """Tempo 3.0.3's code keeps `metrics_generator_client` (a map[string]any "kept for
    one-release config compatibility") and still writes vParquet3 blocks, although the 3.0 docs
    call both removed: start-up succeeds, so the schema warns instead of refusing."""
    assert _tempo_problems({"metrics_generator_client": {"grpc_compression": "snappy"}}) == [
        ("metrics_generator_client", True)
    ]
    block = {"storage": {"trace": {"block": {"version": "vParquet3"}}}}
    assert _tempo_problems(block) == [("storage.trace.block.version", True)]


def test_tempo_schema_refuses_block_versions_3_0_3_cannot_open() -> None:
    for version in ("v2", "vParquet2"):
        block = {"storage": {"trace": {"block": {"version": version}}}}
        assert _tempo_problems(block) == [("storage.trace.block.version", False)]
    for version in ("vParquet4", "vParquet5"):
        assert _tempo_problems({"storage": {"trace": {"block": {"version": version}}}}) == []
