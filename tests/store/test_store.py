"""The outcome store: schema versioning, idempotent transactional writes, export."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from ponder.errors import StoreError
from ponder.store import SCHEMA_VERSION, ImportBatch, Store, export_outcomes
from ponder.store.schema import OUTCOME_STORE_COLUMNS
from ponder.types import Run


def _batch(n_problems: int = 3, budgets: tuple[int | None, ...] = (1024, 2048)) -> ImportBatch:
    rows = []
    for p in range(n_problems):
        for b in budgets:
            for s in range(2):
                rows.append(
                    {
                        "run_id": "r1",
                        "dataset": "toy",
                        "problem_id": f"p{p}",
                        "model": "m",
                        "mode": "think",
                        "budget": b,
                        "sample_idx": s,
                        "output_tokens": 100 * (p + 1),
                        "truncated": 0.0,
                        "answered": 1.0,
                        "extracted_answer": str(p),
                        "correct": float((p + s) % 2),
                        "n_runs": 1,
                    }
                )
    frame = pd.DataFrame(rows)
    for c in OUTCOME_STORE_COLUMNS:
        if c not in frame.columns:
            frame[c] = None
    return ImportBatch(runs=[Run(run_id="r1", model="m", budget_kind="hard_cap")], outcomes=frame)


def test_write_is_idempotent_by_key(store: Store) -> None:
    first = store.write(_batch())
    assert first.outcomes_added == 12
    assert first.runs_added == 1
    assert first.problems_added == 3
    again = store.write(_batch())
    assert again.outcomes_added == 0
    assert again.outcomes_skipped == 12
    assert store.counts()["outcomes"] == 12


def test_null_budget_is_part_of_the_key(store: Store) -> None:
    store.write(_batch(budgets=(None,)))
    again = store.write(_batch(budgets=(None,)))
    assert again.outcomes_added == 0
    frame = store.outcomes_frame()
    assert frame["budget"].isna().all()
    assert len(frame) == 6


def test_failed_write_leaves_store_unchanged(store: Store) -> None:
    store.write(_batch(n_problems=1))
    before = store.counts()
    bad = _batch(n_problems=2)
    bad.outcomes.loc[len(bad.outcomes) - 1, "correct"] = 3.0  # violates the CHECK constraint
    with pytest.raises(StoreError, match=r"CHECK constraint failed.*nothing was written"):
        store.write(bad)
    assert store.counts() == before


def test_outcome_frame_types_and_join(store: Store) -> None:
    store.write(_batch())
    frame = store.outcomes_frame()
    assert frame["budget"].dtype == "float64"
    assert frame["correct"].dtype == "float64"
    assert set(frame["budget_kind"]) == {"hard_cap"}
    assert frame.groupby("budget")["correct"].mean().to_dict() == {1024.0: 0.5, 2048.0: 0.5}
    assert len(store.outcomes_frame(models=["other"])) == 0


def test_problem_upsert_fills_but_never_overwrites(store: Store) -> None:
    batch = _batch(n_problems=1)
    batch.problems = pd.DataFrame(
        [
            {
                "dataset": "toy",
                "problem_id": "p0",
                "text": None,
                "gold": "0",
                "level": None,
                "subject": None,
                "metadata_json": "{}",
            }
        ]
    )
    store.write(batch)
    batch.problems = pd.DataFrame(
        [
            {
                "dataset": "toy",
                "problem_id": "p0",
                "text": "What?",
                "gold": "99",
                "level": 3,
                "subject": "algebra",
                "metadata_json": "{}",
            }
        ]
    )
    store.write(batch)
    row = store.problems_frame().iloc[0]
    assert row["text"] == "What?"
    assert row["gold"] == "0"
    assert row["level"] == 3


def test_schema_version_recorded_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        assert st.schema_version == SCHEMA_VERSION
        st.write(_batch())
    with Store(path, create=False) as st:
        assert st.counts()["outcomes"] == 12


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this ponder supports"):
        Store(path)


def test_corrupt_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a readable ponder store"):
        Store(path)
    assert path.read_bytes() == before


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a ponder store"):
        Store(path)


def test_missing_store_is_not_created_for_reading(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store at"):
        Store(tmp_path / "absent.sqlite", create=False)
    assert not (tmp_path / "absent.sqlite").exists()


def test_export_csv_and_parquet_round_trip(store: Store, tmp_path: Path) -> None:
    store.write(_batch())
    n = export_outcomes(store, tmp_path / "o.csv")
    assert n == 12
    csv = pd.read_csv(tmp_path / "o.csv")
    export_outcomes(store, tmp_path / "o.parquet")
    parquet = pd.read_parquet(tmp_path / "o.parquet")
    expected = store.outcomes_frame()
    assert list(parquet.columns) == list(expected.columns)
    pd.testing.assert_series_equal(parquet["correct"], expected["correct"])
    assert csv["correct"].sum() == expected["correct"].sum()
    assert not list(tmp_path.glob("*.tmp"))


def test_wal_mode(store: Store) -> None:
    mode = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_readonly_open_reads_and_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        st.write(_batch())
    with Store(path, readonly=True) as st:
        assert len(st.outcomes_frame()) == 12
        with pytest.raises(StoreError, match="cannot write"):
            st.write(_batch())
    with pytest.raises(StoreError, match="no store at"):
        Store(tmp_path / "absent.sqlite", readonly=True)
    assert not (tmp_path / "absent.sqlite").exists()
