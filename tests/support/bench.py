"""Run the benchmark scripts as their users do (``python bench/<script>.py …``): nothing imports ``bench/``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from support.fixtures import REPO_ROOT


def run_quality(argv: Sequence[str]) -> str:
    """``python bench/quality.py ARGV``; its ``summary.md``. A failed run raises ``SystemExit`` with its stderr, as
    the script's own ``main`` would, so tests match the message the user sees."""
    result = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "quality.py"), *argv], capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr.strip())
    return (Path(argv[list(argv).index("--out") + 1]) / "summary.md").read_text()
