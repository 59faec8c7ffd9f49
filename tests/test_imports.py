"""Every package imports on its own, in a fresh interpreter (no hidden import-order cycles)."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    "ponder.problems",
    "ponder.tables",
    "ponder.importers",
    "ponder.store",
    "ponder.grading",
    "ponder.grading.agreement",
    "ponder.curves",
    "ponder.datasets",
    "ponder.evaluate",
    "ponder.policies",
    "ponder.report",
    "ponder.cli",
]


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
