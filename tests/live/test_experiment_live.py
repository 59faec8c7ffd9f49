"""`ponder experiment forking-tokens` on the real engine (SmolLM2-135M, plumbing only): it
forks chains a real sweep recorded, writes its rows apart from the recorded ones, resumes
with nothing to do, and `ponder claims` reads them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ponder.store import Store
from ponder.sweep import load_spec, run_sweep

pytestmark = pytest.mark.live

SMOL = "smollm2-135m"


def _ponder(tmp_path: Path, models: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PONDER_DATA_DIR": str(tmp_path / "user-data"),
        "PONDER_MODELS_DIR": str(models),
        "COLUMNS": "200",
    }
    env.pop("PONDER_STORE", None)
    return subprocess.run(
        [sys.executable, "-m", "ponder", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )


def test_forking_experiment_on_recorded_chains(smol_path: Path, tmp_path: Path) -> None:
    spec = {
        "name": "fork-smoke",
        "problems": [{"generated": {"levels": [1, 2], "per_level": 1, "seed": 0}}],
        "models": [
            {
                "name": SMOL,
                "backend": "llamacpp",
                "options": {"path": str(smol_path), "n_threads": 1, "n_ctx": 512},
            }
        ],
        "modes": ["think"],
        "budgets": {"ladder": [16, 32]},
        "reserve": 6,
        "sampling": [{"temperature": 0}],
        "entropy": True,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    store = tmp_path / "s.sqlite"
    with Store(store) as st:
        summary = run_sweep(load_spec(path), st, backoff_s=0)
        assert summary.errors == 0, summary.error_messages
        recorded = st.counts()["outcomes"]
    models = smol_path.parent.resolve()
    args = ("experiment", "forking-tokens", "-m", SMOL, "-d", "arith", "--chains", "2")
    args += ("--positions", "1", "--threads", "1", "--store", str(store))
    first = _ponder(tmp_path, models, *args)
    assert first.returncode == 0, first.stderr
    assert "2 chains run now, 0 done before, 0 failed" in first.stdout
    conn = sqlite3.connect(store)
    try:
        rows = conn.execute(
            "SELECT mode, chain_id, budget, extracted_answer FROM outcomes "
            "WHERE run_id LIKE 'claims/forking-tokens/%'"
        ).fetchall()
        chains = {r[0] for r in conn.execute("SELECT chain_id FROM chains")}
    finally:
        conn.close()
    # Per chain: one high-entropy fork, one matched other position, one null control.
    assert sorted(r[0] for r in rows) == sorted(["fork-high", "fork-other", "fork-null"] * 2)
    assert {r[1] for r in rows} <= chains
    assert all(r[2] is not None and r[2] >= 0 for r in rows)
    # The recorded analyses never see the experiment's rows.
    with Store(store, readonly=True) as st:
        assert len(st.outcomes_frame()) == recorded
        assert len(st.outcomes_frame(experiments=True)) == recorded + len(rows)
    again = _ponder(tmp_path, models, *args)
    assert again.returncode == 0, again.stderr
    assert "0 chains run now, 2 done before" in again.stdout
    verdict = _ponder(
        tmp_path, models, "claims", "-c", "forking-tokens", "--json", "--store", str(store)
    )
    assert verdict.returncode == 0, verdict.stderr
    (finding,) = json.loads(verdict.stdout)["findings"]
    # Two problems cannot carry a verdict; the refusal says how many it had.
    assert finding["verdict"] == "insufficient"
    assert "2" in finding["reason"]


def test_experiment_on_a_stored_claim_is_one_line(tmp_path: Path) -> None:
    result = _ponder(tmp_path, tmp_path, "experiment", "overthinking", "-m", SMOL)
    assert result.returncode == 1
    assert "has no experiment to run" in result.stderr
