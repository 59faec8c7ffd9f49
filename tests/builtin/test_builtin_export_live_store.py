"""`ponder sweep export` while a sweep is still writing the store (another process): every
export is one consistent snapshot, never a chain without its rows or rows without their
chain, and imports cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from ponder.builtin.export import export_sweep
from ponder.importers import import_paths
from ponder.store import Store

LADDER = [8, 16, 32, 64, 128]


def test_exports_of_a_running_sweep_are_consistent_snapshots(tmp_path: Path) -> None:
    problems = tmp_path / "probs.jsonl"
    problems.write_text(
        "".join(
            json.dumps(
                {"problem_id": f"p{i}", "text": f"Add {i} and {i + 3}.", "gold": str(2 * i + 3)}
            )
            + "\n"
            for i in range(12)
        )
    )
    spec = {
        "name": "slow",
        "problems": [{"file": str(problems), "dataset": "toy"}],
        "models": [
            {
                "name": "fake-slow",
                "backend": "fake",
                "options": {"tokens_per_number": 20, "delay_per_token": 0.002},
            }
        ],
        "modes": ["think", "no-think"],
        "budgets": {"ladder": LADDER},
        "reserve": 8,
        "sampling": [{"temperature": 0}, {"temperature": 0.7, "samples": 2}],
        "concurrency": 2,
        "entropy": True,
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    store = tmp_path / "s.sqlite"
    env = {**os.environ, "PONDER_DATA_DIR": str(tmp_path / "d")}
    writer = subprocess.Popen(
        [sys.executable, "-m", "ponder", "sweep", "run", "spec.yaml", "--store", "s.sqlite"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    exports = []
    try:
        while True:
            finished = writer.poll() is not None  # one more export after the end
            if store.exists():
                try:
                    out = tmp_path / f"e{len(exports)}"
                    export_sweep(store, "slow", out)
                    exports.append(out)
                except Exception as exc:  # before the sweep's first row: nothing to export
                    early = ("schema version 0", "no sweep", "no outcome rows")
                    assert any(text in str(exc) for text in early), exc
            if finished:
                break
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()
    assert writer.returncode == 0 and exports
    for folder in exports:
        outcomes = pq.read_table(folder / "outcomes.parquet").to_pandas()
        chains = set(pq.read_table(folder / "chains.parquet")["chain_id"].to_pylist())
        think = outcomes[outcomes["budget"].notna()]
        # Every chain has all its rungs, and every rung row has its chain.
        assert set(think["chain_id"]) == chains
        assert (think.groupby("chain_id").size() == len(LADDER)).all()
        done = json.loads((folder / "manifest.json").read_text())["counts"]["work_items_done"]
        assert len(chains) + int(outcomes["budget"].isna().sum()) == done
        with Store(folder.with_suffix(".sqlite")) as fresh:
            assert import_paths(fresh, [folder])[0].result.outcomes_added == len(outcomes)
    final = pq.read_table(exports[-1] / "outcomes.parquet").num_rows
    assert final == 12 * 3 * (len(LADDER) + 1)  # 12 problems x 3 samples x (5 rungs + 1)
