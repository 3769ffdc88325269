"""Root pytest configuration: makes the shared test support modules importable from every suite."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "tests" / "support"))
