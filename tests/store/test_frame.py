"""The column-wise outcome-frame reader gives exactly the frame the old tuple-list reader gave.

The reference below is the previous ``Store.outcomes_frame`` verbatim: one join query,
``fetchall`` and ``DataFrame.from_records``. It is compared on the recorded datasets and on
hand-made stores holding NULLs, NaN, huge and negative numbers, odd stored types (text and
blobs in numeric columns, written with plain SQL), outcomes of unknown runs and problems,
filters and chunk boundaries.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ponder.store import Store
from ponder.store.frame import read_outcomes_frame

_FLOAT_COLUMNS = (
    "budget",
    "prompt_tokens",
    "reasoning_tokens",
    "answer_tokens",
    "output_tokens",
    "latency_s",
    "truncated",
    "answered",
    "correct",
    "level",
)


def reference_frame(
    conn: sqlite3.Connection,
    *,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    include_text: bool = False,
) -> pd.DataFrame:
    """The old reader: a join, a list of tuples, from_records, then the same conversions."""
    text = ", o.response_text" if include_text else ""
    sql = (
        "SELECT o.run_id, o.dataset, o.problem_id, o.model, o.mode, o.budget, "
        "o.sample_idx, o.prompt_tokens, o.reasoning_tokens, o.answer_tokens, "
        "o.output_tokens, o.latency_s, o.truncated, o.answered, o.extracted_answer, "
        f"o.correct, o.n_runs, r.budget_kind, p.level, p.subject{text} "
        "FROM outcomes o JOIN runs r ON r.run_id = o.run_id "
        "LEFT JOIN problems p ON p.dataset = o.dataset AND p.problem_id = o.problem_id"
    )
    where: list[str] = []
    params: list[str] = []
    for column, values in (("o.dataset", datasets), ("o.model", models)):
        if values:
            where.append(f"{column} IN ({', '.join('?' for _ in values)})")
            params.extend(values)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY o.rowid"
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    frame = pd.DataFrame.from_records(cursor.fetchall(), columns=names)
    for column in _FLOAT_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["sample_idx"] = frame["sample_idx"].astype("int64")
    frame["n_runs"] = frame["n_runs"].astype("int64")
    return frame


def assert_same(new: pd.DataFrame, old: pd.DataFrame) -> None:
    """Equal columns, dtypes and values; float columns compared bit for bit."""
    assert list(new.columns) == list(old.columns)
    assert new.dtypes.to_dict() == old.dtypes.to_dict()
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    for column in _FLOAT_COLUMNS:
        a, b = new[column].to_numpy(), old[column].to_numpy()
        assert a.tobytes() == b.tobytes() or np.array_equal(a, b, equal_nan=True), column


OUTCOME_SQL = (
    "INSERT INTO outcomes (run_id, dataset, problem_id, model, mode, budget, sample_idx, "
    "prompt_tokens, reasoning_tokens, answer_tokens, output_tokens, latency_s, truncated, "
    "answered, extracted_answer, correct, n_runs, response_text) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _raw_store(path: Path, rows: list[tuple[object, ...]]) -> sqlite3.Connection:
    """A migrated store filled with plain SQL (no validation), foreign keys off."""
    Store(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.executemany(
        "INSERT INTO runs (run_id, model, backend, source, budget_kind, created_at) "
        "VALUES (?, ?, 'recorded', '', ?, 'now')",
        [("r1", "m1", "hard_cap"), ("r2", "m2", "none"), ("r3", "m3", "forced")],
    )
    conn.executemany(
        "INSERT INTO problems (dataset, problem_id, level, subject) VALUES (?, ?, ?, ?)",
        [("d1", "p1", 3, "algebra"), ("d1", "p2", None, None), ("d2", "p1", 2**60 + 1, "x")],
    )
    conn.executemany(OUTCOME_SQL, rows)
    return conn


def _row(i: int, **kw: object) -> tuple[object, ...]:
    base: dict[str, object] = {
        "run_id": "r1",
        "dataset": "d1",
        "problem_id": "p1",
        "model": "m1",
        "mode": "think",
        "budget": 1024,
        "sample_idx": i,
        "prompt_tokens": 10,
        "reasoning_tokens": None,
        "answer_tokens": None,
        "output_tokens": 100 + i,
        "latency_s": 0.1 * i,
        "truncated": 0,
        "answered": 1,
        "extracted_answer": "42",
        "correct": 1.0,
        "n_runs": 1,
        "response_text": None,
    }
    base.update(kw)
    return tuple(base.values())


def _odd_rows() -> list[tuple[object, ...]]:
    return [
        _row(0),
        _row(1, budget=None, extracted_answer=None, latency_s=float("nan")),
        _row(2, output_tokens=2**62 + 3, prompt_tokens=-(2**62) - 5, latency_s=1e308),
        _row(3, latency_s=-0.0, reasoning_tokens=-7, answer_tokens=2**53 + 1),
        _row(4, run_id="r2", mode="no-think", budget=None, correct=0.25, n_runs=4),
        _row(5, run_id="missing-run", model="m9"),  # dropped by the join with runs
        _row(6, dataset="d2", problem_id="p1", latency_s=0.1 + 0.2),
        _row(7, dataset="d3", problem_id="unknown"),  # no problem row: level NaN
        _row(8, problem_id="p2", extracted_answer="", response_text="why\x00not"),
        _row(9, output_tokens="12", latency_s="inf", truncated="yes"),  # text in numbers
        _row(10, output_tokens=b"\x01\x02", budget=2048.5),  # a blob and a real
        _row(11, extracted_answer="ünïcødé \\boxed{1}", model="m1", mode="cot"),
        _row(12, run_id="r3", budget=-1, sample_idx=-3, correct=0.0),
    ]


@pytest.mark.parametrize("include_text", [False, True])
@pytest.mark.parametrize("chunk_rows", [1, 3, 1000])
def test_odd_values_match_the_old_reader(
    tmp_path: Path, include_text: bool, chunk_rows: int
) -> None:
    conn = _raw_store(tmp_path / "s.sqlite", _odd_rows())
    old = reference_frame(conn, include_text=include_text)
    new = read_outcomes_frame(conn, include_text=include_text, chunk_rows=chunk_rows)
    assert_same(new, old)
    # Values checked independently of the old reader, too.
    assert len(new) == 12 and "m9" not in set(new["model"])
    assert new["output_tokens"].iloc[2] == float(2**62 + 3)
    assert new["prompt_tokens"].iloc[2] == -float(2**62 + 5)
    assert new["level"].tolist()[:3] == [3.0, 3.0, 3.0]
    assert np.isnan(new["level"].iloc[6]) and new["level"].iloc[5] == float(2**60 + 1)
    assert np.isnan(new["budget"].iloc[1]) and np.isnan(new["latency_s"].iloc[1])
    assert new["latency_s"].iloc[8] == np.inf and new["output_tokens"].iloc[8] == 12.0
    assert np.isnan(new["truncated"].iloc[8]) and np.isnan(new["output_tokens"].iloc[9])
    assert new["budget_kind"].tolist()[3:5] == ["hard_cap", "none"]


@pytest.mark.parametrize(
    ("datasets", "models"),
    [(None, None), (["d1"], None), (None, ["m1", "m3"]), (["d2"], ["m1"]), (["zzz"], None)],
)
def test_filters_match_the_old_reader(
    tmp_path: Path, datasets: list[str] | None, models: list[str] | None
) -> None:
    conn = _raw_store(tmp_path / "s.sqlite", _odd_rows())
    old = reference_frame(conn, datasets=datasets, models=models)
    assert_same(read_outcomes_frame(conn, datasets=datasets, models=models, chunk_rows=2), old)


def test_empty_store_matches_the_old_reader(tmp_path: Path) -> None:
    conn = _raw_store(tmp_path / "s.sqlite", [])
    old = reference_frame(conn)
    new = read_outcomes_frame(conn)
    assert len(new) == 0
    assert_same(new, old)


def test_all_null_text_columns_stay_object(tmp_path: Path) -> None:
    rows = [_row(i, extracted_answer=None) for i in range(5)]
    conn = _raw_store(tmp_path / "s.sqlite", rows)
    new = read_outcomes_frame(conn, include_text=True, chunk_rows=2)
    assert new["extracted_answer"].dtype == object and new["response_text"].isna().all()
    assert_same(new, reference_frame(conn, include_text=True))


def test_store_method_uses_the_reader_and_keeps_the_snapshot_open_only_while_reading(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite"
    _raw_store(path, _odd_rows()).close()
    with Store(path, readonly=True) as store:
        frame = store.outcomes_frame(datasets=["d1"])
        assert not store._conn.in_transaction
        assert_same(frame, reference_frame(store._conn, datasets=["d1"]))


def test_recorded_datasets_match_the_old_reader(shared_data: Path, tmp_path: Path) -> None:
    from ponder.importers import import_paths

    with Store(tmp_path / "s.sqlite") as store:
        import_paths(store, [shared_data])
        old = reference_frame(store._conn, include_text=True)
        assert len(old) > 10_000
        assert_same(store.outcomes_frame(include_text=True), old)
        for name in sorted(set(old["dataset"]))[:3]:
            assert_same(
                store.outcomes_frame(datasets=[name]), reference_frame(store._conn, datasets=[name])
            )


def test_reading_holds_about_one_frame_not_a_tuple_per_row(tmp_path: Path) -> None:
    """Peak Python memory while reading stays under twice the frame (the old reader held a
    tuple of Python objects per row, over four times the frame)."""
    import tracemalloc

    rows = [
        _row(i, problem_id=f"p{i % 500}", model=f"m{i % 3}", extracted_answer=str(i % 7))
        for i in range(6_000)
    ]
    conn = _raw_store(tmp_path / "s.sqlite", rows)
    read_outcomes_frame(conn, chunk_rows=1000)  # warm up caches and lazy imports
    peaks = {}
    for name, read in (
        ("new", lambda: read_outcomes_frame(conn, chunk_rows=1000)),
        ("old", lambda: reference_frame(conn)),
    ):
        tracemalloc.start()
        frame = read()
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        size = int(frame.memory_usage(deep=True).sum())
        del frame
    assert peaks["new"] < 2 * size
    assert peaks["old"] > 4 * size  # the measurement does see the tuple list
