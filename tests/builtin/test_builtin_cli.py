"""`ponder sweep export` and `ponder import FOLDER` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_builtin_format import _spec

from ponder.store import Store
from ponder.sweep import run_sweep


def _ponder(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PONDER_DATA_DIR": str(cwd / "user-data"), "COLUMNS": "200"}
    env.pop("PONDER_STORE", None)
    return subprocess.run(
        [sys.executable, "-m", "ponder", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    with Store(tmp_path / "source.sqlite") as store:
        run_sweep(_spec(tmp_path), store, backoff_s=0)
    return tmp_path / "source.sqlite"


def test_export_then_import_from_the_command_line(source: Path, tmp_path: Path) -> None:
    result = _ponder(
        "sweep", "export", "toy", "--store", "source.sqlite", "-o", "out", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "wrote sweep toy to out: 108 outcomes, 3 problems, 8 runs, 18 chains"
    )
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    # The command is recorded with the paths as given (relative: nothing machine-specific).
    assert manifest["produced"]["command"] == (
        "ponder sweep export toy --store source.sqlite --out out"
    )
    assert str(tmp_path) not in json.dumps(manifest)
    result = _ponder("import", "out", "--store", "new.sqlite", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(f["preset"], f["rows_added"]) for f in report["files"]] == [("builtin", 108)]
    conn = sqlite3.connect(tmp_path / "new.sqlite")
    try:
        assert conn.execute("SELECT COUNT(*) FROM chains").fetchone()[0] == 18
    finally:
        conn.close()


def test_damaged_folder_is_one_line_and_no_store(source: Path, tmp_path: Path) -> None:
    exported = _ponder(
        "sweep", "export", "toy", "--store", "source.sqlite", "-o", "out", cwd=tmp_path
    )
    assert exported.returncode == 0, exported.stderr
    damaged = tmp_path / "out" / "outcomes.parquet"
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
    result = _ponder("import", "out", "--store", "new.sqlite", cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "outcomes.parquet: sha256" in lines[0] and "nothing was written" in lines[0]
    assert not (tmp_path / "new.sqlite").exists()
