"""The sweep tables of migration 3: a v2 store migrates and keeps its rows, the default
frame is unchanged, the signal columns are opt-in, an item is written all or nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ponder.errors import StoreError
from ponder.store import Store
from ponder.store.schema import MIGRATIONS, SCHEMA_VERSION, SIGNAL_COLUMNS
from ponder.sweep.rows import blob_entropies, entropies_blob
from ponder.types import OUTCOME_COLUMNS, Run

RUN = Run("sw/m/think/ladder-x", "m", backend="fake", source="sweep:sw", budget_kind="forced")
PROBLEMS = pd.DataFrame(
    [
        {
            "dataset": "d",
            "problem_id": "p",
            "text": "t",
            "gold": "7",
            "level": 2,
            "subject": None,
            "metadata_json": "{}",
        }
    ]
)


def _row(rung: int, budget: int, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": RUN.run_id,
        "dataset": "d",
        "problem_id": "p",
        "model": "m",
        "mode": "think",
        "budget": budget,
        "sample_idx": 0,
        "prompt_tokens": 20,
        "reasoning_tokens": budget,
        "answer_tokens": 3,
        "output_tokens": budget + 3,
        "latency_s": 0.5,
        "truncated": 0,
        "answered": 1,
        "extracted_answer": "7",
        "correct": 1.0,
        "n_runs": 1,
        "response_text": "\\boxed{7}",
        "extra_json": "{}",
        "chain_id": "c1",
        "rung": rung,
        "natural": 0,
        "answer_prob": 0.25,
        "entropy_tail": 1.5,
        "stop_cost_tokens": budget + 3 * (rung + 1),
    }
    row.update(kw)
    return row


def test_v2_store_migrates_and_imported_rows_have_null_signals(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + MIGRATIONS[1])
    conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    conn.execute("INSERT INTO runs VALUES ('r', 'm', 'recorded', 's', 'none', '{}', '2026-01-01')")
    conn.execute("INSERT INTO problems (dataset, problem_id) VALUES ('d', 'p')")
    conn.execute(
        "INSERT INTO outcomes (run_id, dataset, problem_id, model, mode, sample_idx, correct) "
        "VALUES ('r', 'd', 'p', 'm', 'default', 0, 1)"
    )
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        frame = store.outcomes_frame()
        assert list(frame.columns) == list(OUTCOME_COLUMNS)  # the default frame is unchanged
        signals = store.outcomes_frame(signals=True)
        assert list(signals.columns) == [*OUTCOME_COLUMNS, *SIGNAL_COLUMNS]
        assert signals[list(SIGNAL_COLUMNS)].isna().all().all()
        assert store.sweep_items("any") == {}


def test_item_rows_chain_and_done_mark_are_written_together(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        store.begin_sweep("sw", "{}", [RUN], PROBLEMS)
        chain = {
            "chain_id": "c1",
            "run_id": RUN.run_id,
            "dataset": "d",
            "problem_id": "p",
            "sample_idx": 0,
            "text": "abc",
            "tokens": 64,
            "finished": 0,
            "entropies": entropies_blob([0.5, 1.25, 3.0]),
        }
        rows = [_row(0, 16), _row(1, 64, natural=1, answer_prob=None, answer_tokens=0)]
        assert store.write_sweep_item("sw", "k1", rows, chain, attempts=1) == 2
        assert store.write_sweep_item("sw", "k1", rows, chain, attempts=1) == 0  # no duplicate
        frame = store.outcomes_frame(signals=True, include_text=True)
        assert frame["rung"].tolist() == [0.0, 1.0]
        assert frame["natural"].tolist() == [0.0, 1.0]
        assert frame["stop_cost_tokens"].tolist() == [19.0, 70.0]
        assert frame["answer_prob"].tolist()[0] == 0.25 and np.isnan(frame["answer_prob"][1])
        assert frame["chain_id"].tolist() == ["c1", "c1"]
        assert frame["budget_kind"].tolist() == ["forced", "forced"]
        assert frame["level"].tolist() == [2.0, 2.0]
        state = store.sweep_items("sw")["k1"]
        assert (state.status, state.attempts, state.error) == ("done", 2, None)
        blob = store.query("SELECT entropies FROM chains")[0][0]
        assert blob_entropies(blob).tolist() == [0.5, 1.25, 3.0]  # exact in float16


def test_a_bad_row_writes_nothing_of_its_item(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        store.begin_sweep("sw", "{}", [RUN], PROBLEMS)
        chain = {
            "chain_id": "c1",
            "run_id": RUN.run_id,
            "dataset": "d",
            "problem_id": "p",
            "sample_idx": 0,
            "text": "",
            "tokens": 1,
            "finished": 1,
            "entropies": None,
        }
        with pytest.raises(StoreError, match="nothing was written"):
            store.write_sweep_item(
                "sw", "k1", [_row(0, 16), _row(1, 32, correct=2.0)], chain, attempts=1
            )
        assert store.counts()["outcomes"] == 0
        assert store.query("SELECT COUNT(*) FROM chains") == [(0,)]
        assert store.sweep_items("sw") == {}


def test_errors_are_marked_and_replaced_by_done(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        store.begin_sweep("sw", "{}", [RUN], PROBLEMS)
        store.record_sweep_error("sw", "k1", "503 from upstream", 3)
        state = store.sweep_items("sw")["k1"]
        assert (state.status, state.attempts, state.error) == ("error", 3, "503 from upstream")
        store.write_sweep_item("sw", "k1", [_row(0, 16)], None, attempts=1)
        state = store.sweep_items("sw")["k1"]
        assert (state.status, state.attempts, state.error) == ("done", 4, None)


def test_a_run_stored_with_another_model_is_a_conflict(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        store.begin_sweep("sw", "{}", [RUN], PROBLEMS)
        other = Run(RUN.run_id, "other-model", backend="fake", budget_kind="forced")
        with pytest.raises(StoreError, match="already stored with model='m'"):
            store.begin_sweep("sw", "{}", [other], PROBLEMS)


def test_problems_keep_known_values(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        store.begin_sweep("sw", "{}", [RUN], PROBLEMS)
        store.begin_sweep("sw", "{}", [RUN], PROBLEMS.assign(gold="8", level=None))
        assert store.query("SELECT gold, level FROM problems") == [("7", 2)]
