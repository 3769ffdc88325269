"""Write the dashboards to grafana/dashboards, or check that the committed files are current.

python -m signalbox.dashboards [--root DIR] [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from signalbox.dashboards import build_all, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m signalbox.dashboards")
    parser.add_argument("--root", type=Path, default=Path(), help="repository root")
    parser.add_argument("--check", action="store_true", help="fail if committed JSON is stale")
    args = parser.parse_args(argv)
    out_dir: Path = args.root / "grafana" / "dashboards"
    stale = []
    for relative, dashboard in build_all().items():
        path = out_dir / relative
        content = render(dashboard)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        if args.check:
            stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print(
            "stale dashboards (run `python -m signalbox.dashboards`):",
            *stale,
            sep="\n  ",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
