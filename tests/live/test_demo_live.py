"""`ponder demo --live` on the real engine (SmolLM2-135M, plumbing only): the short sweep runs,
its rows and chains reach the demo's store exactly as the runner wrote them (export, then
import: the built-in format's round trip on real engine data), they are analysed beside the
built-in sweep, and a second run resumes with nothing to do."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from ponder.builtin import builtin_folder

pytestmark = pytest.mark.live

SMOL = "smollm2-135m"


def _demo(tmp_path: Path, models: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PONDER_DATA_DIR": str(tmp_path / "user-data"),
        "PONDER_MODELS_DIR": str(models),
        "PONDER_SHARED_DATA": str(tmp_path / "no-shared-data"),
        "COLUMNS": "200",
    }
    env.pop("PONDER_STORE", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ponder",
            "demo",
            "--live",
            "--live-model",
            SMOL,
            "--live-problems",
            "1",
            "--threads",
            "1",
            "--n-boot",
            "100",
            "--no-policies",
            "--no-claims",
            "--out",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
        check=False,
    )


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def test_demo_live_runs_a_real_sweep_beside_the_builtin_one(
    smol_path: Path, tmp_path: Path
) -> None:
    result = _demo(tmp_path, smol_path.parent)
    assert result.returncode == 0, result.stderr
    assert f"model {SMOL}: present" in result.stdout
    assert "live sweep demo-live-smollm2-135m: 8 items run, 0 done before, 0 errors" in (
        result.stdout
    )
    out = tmp_path / "demo"
    live, demo = out / "live.sqlite", out / "demo.sqlite"
    # 4 levels x 1 problem: a 4-rung greedy ladder and a greedy direct answer each.
    live_rows = _rows(live, "SELECT * FROM outcomes ORDER BY rowid")
    assert len(live_rows) == 4 * (4 + 1)
    imported = _rows(demo, "SELECT * FROM outcomes WHERE dataset = 'arith-live' ORDER BY rowid")
    assert imported == live_rows  # every column, signals included
    chains = "SELECT * FROM chains WHERE dataset = 'arith-live' ORDER BY chain_id"
    assert _rows(demo, chains) == _rows(live, chains) and len(_rows(live, chains)) == 4
    builtin_rows = pq.read_metadata(builtin_folder() / "outcomes.parquet").num_rows
    n_builtin = _rows(demo, "SELECT COUNT(*) FROM outcomes WHERE dataset != 'arith-live'")
    assert n_builtin == [(builtin_rows,)]
    # The report has the live model's curve at every rung, beside the built-in models.
    html = (out / "report.html").read_text()
    cells = re.findall(  # the "all cells" table
        r"<tr><td[^>]*>smollm2-135m</td><td[^>]*>arith-live</td><td[^>]*>[^<]*</td>"
        r"<td[^>]*>think-greedy</td><td[^>]*>(\d+)</td>",
        html[html.index('<h2 id="cells">') :],
    )
    assert cells == ["32", "64", "128", "256"]
    for model in set(pq.read_table(builtin_folder() / "outcomes.parquet")["model"].to_pylist()):
        assert f">{model}</td>" in html
    # Run again: the sweep resumes with nothing left to do, the figures are the same.
    again = _demo(tmp_path, smol_path.parent)
    assert again.returncode == 0, again.stderr
    assert "8 items run" not in again.stdout and "0 items run, 8 done before" in again.stdout
    assert _rows(live, "SELECT * FROM outcomes ORDER BY rowid") == live_rows
