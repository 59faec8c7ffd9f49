"""Every package imports on its own, in a fresh interpreter (no hidden import-order cycles)."""

from __future__ import annotations

import ast
import pathlib
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
    "ponder.outcomes",
    "ponder.decision",
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


# Layers: a package may import only from the packages listed for it (and from itself), so the
# arrows of the data flow run one way. Checked statically over every `ponder.*` import,
# including imports inside functions and under TYPE_CHECKING.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "ponder.decision": ("ponder.outcomes", "ponder.policies", "ponder.evaluate"),
    "ponder.outcomes": ("ponder.policies", "ponder.evaluate", "ponder.report", "ponder.cli"),
    "ponder.policies": ("ponder.evaluate", "ponder.report", "ponder.cli"),
    "ponder.problems": ("ponder.store", "ponder.importers", "ponder.datasets"),
    "ponder.importers": ("ponder.datasets", "ponder.cli"),
    "ponder.store": ("ponder.importers", "ponder.curves", "ponder.policies", "ponder.cli"),
    "ponder.curves": ("ponder.policies", "ponder.evaluate", "ponder.report", "ponder.cli"),
}


def _ponder_imports(path: pathlib.Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("ponder")}


def _package_files(package: str) -> list[pathlib.Path]:
    root = pathlib.Path(__file__).resolve().parents[1] / "src" / pathlib.Path(*package.split("."))
    return sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package: str) -> None:
    files = _package_files(package)
    assert files and all(f.exists() for f in files), package
    offending = [
        f"{f.name} imports {name}"
        for f in files
        for name in sorted(_ponder_imports(f))
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[package])
    ]
    assert not offending, offending
