"""The sufficient-statistics table from the frame (pandas) and from the segments (DuckDB):
equal rows, order and dtypes; integer-valued columns exactly, the two float sums within a
relative 1e-12 (summation order), on synthetic rows, the built-in sweep and recorded data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from columnar_helpers import FLOAT_RTOL, synthetic_frame

from ponder.builtin import builtin_folder
from ponder.columnar import (
    FLOAT_STATS,
    INT_STATS,
    KEYS,
    STATS,
    connect,
    stats_from_frame,
    stats_from_parquet,
    write_segments,
)
from ponder.errors import InputError
from ponder.importers import import_paths
from ponder.store import Store


def assert_same_stats(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Keys, order, dtypes and integer-valued columns exact; float sums within FLOAT_RTOL."""
    exact = [*KEYS, *INT_STATS]
    pd.testing.assert_frame_equal(got[exact], want[exact], check_exact=True)
    pd.testing.assert_frame_equal(
        got[list(FLOAT_STATS)], want[list(FLOAT_STATS)], check_exact=False, rtol=FLOAT_RTOL, atol=0
    )
    assert list(got.columns) == list(want.columns) == [*KEYS, *STATS]


def in_chunks(root: Path, frame: pd.DataFrame, parts: int) -> None:
    """The rows as several segments per dataset, so DuckDB adds groups across files."""
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        write_segments(root, frame.iloc[chunk], segment_id=f"part{i}")


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return synthetic_frame(seed=2)


def test_statistics_by_hand() -> None:
    frame = synthetic_frame(seed=3).iloc[:0]
    rows = pd.DataFrame(
        {
            "dataset": ["d", "d", "d", "d"],
            "problem_id": ["p", "p", "p", "p"],
            "model": ["m", "m", "m", "m"],
            "mode": ["think"] * 4,
            "budget": [np.nan, np.nan, np.nan, 64.0],
            "budget_kind": ["none"] * 4,
            "n_runs": [1, 1, 3, 1],
            "correct": [1.0, 0.0, 2 / 3, 1.0],
            "output_tokens": [10.0, np.nan, np.nan, 64.0],
            "prompt_tokens": [5.0, 6.0, np.nan, 5.0],
            "reasoning_tokens": [np.nan] * 4,
            "answer_tokens": [2.0, 3.0, np.nan, np.nan],
            "truncated": [0.0, 1.0, np.nan, 1.0],
            "answered": [1.0, 0.0, np.nan, 1.0],
            "latency_s": [0.5, np.nan, np.nan, 0.25],
        }
    )
    stats = stats_from_frame(pd.concat([frame, rows], ignore_index=True))
    # Rows: (budget 64, sample), then no budget: aggregated (sample False) before samples.
    assert stats["budget"].tolist()[0] == 64.0 and np.isnan(stats["budget"].tolist()[1])
    assert stats["sample"].tolist() == [True, False, True]
    samples = stats.iloc[2]
    assert samples["rows"] == 2 and samples["correct_n"] == 2 and samples["hits"] == 1
    assert samples["out_n"] == 1 and samples["out_sum"] == 10  # NULL skipped, counted apart
    assert samples["prompt_n"] == 2 and samples["prompt_sum"] == 11
    assert samples["reasoning_n"] == 0 and samples["reasoning_sum"] == 0  # none known: 0, n 0
    assert samples["truncated_sum"] == 1 and samples["answered_sum"] == 1
    assert samples["latency_n"] == 1 and samples["latency_sum"] == 0.5
    aggregated = stats.iloc[1]
    assert aggregated["rows"] == 1 and aggregated["hits"] == 0
    assert aggregated["correct_sum"] == 2 / 3 and aggregated["out_n"] == 0


def test_synthetic_frame_and_parquet_agree(synthetic: pd.DataFrame, tmp_path: Path) -> None:
    in_chunks(tmp_path, synthetic, parts=3)
    want = stats_from_frame(synthetic)
    got = stats_from_parquet(tmp_path)
    assert_same_stats(got, want)
    # The cases the synthetic rows are there for are all present.
    assert want["budget"].isna().any() and not want["sample"].all()
    assert ((want["out_n"] == 0) & (want["rows"] > 0)).any()  # a group with no token counts
    assert (want["out_n"] < want["rows"]).any() and (want["rows"] > 1).all()
    fractional = want.loc[~want["sample"], "correct_sum"]
    assert (fractional != fractional.round()).any()
    assert set(want["dataset"]) == {"alpha", "beta/two words", "gamma"}


def test_dataset_filter_and_engine_settings(synthetic: pd.DataFrame, tmp_path: Path) -> None:
    in_chunks(tmp_path, synthetic, parts=2)
    con = connect()
    got = stats_from_parquet(tmp_path, con, datasets=["gamma"], memory_limit="64MB", threads=1)
    assert con.sql("SELECT current_setting('threads')").fetchall() == [(1,)]
    limit = con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
    assert limit.replace(" ", "").upper().startswith(("61.0MIB", "64.0MB", "64MB"))
    con.close()
    assert_same_stats(got, stats_from_frame(synthetic[synthetic["dataset"] == "gamma"]))
    with pytest.raises(InputError, match="memory limit"):
        stats_from_parquet(tmp_path, memory_limit="lots")
    with pytest.raises(InputError, match="threads"):
        stats_from_parquet(tmp_path, threads=0)


def test_no_segments_gives_the_empty_table_with_the_same_dtypes(
    synthetic: pd.DataFrame, tmp_path: Path
) -> None:
    empty = stats_from_parquet(tmp_path)
    assert len(empty) == 0
    pd.testing.assert_frame_equal(empty, stats_from_frame(synthetic.iloc[:0]))
    assert empty.dtypes.to_dict() == stats_from_frame(synthetic).dtypes.to_dict()


def _frame_and_segments(store: Store, root: Path) -> pd.DataFrame:
    frame = store.outcomes_frame()
    write_segments(root, store.outcomes_frame(signals=True, include_text=True))
    return frame


def test_builtin_sweep_frame_and_parquet_agree(tmp_path: Path) -> None:
    with Store(tmp_path / "store.sqlite") as store:
        import_paths(store, [builtin_folder()])
        frame = _frame_and_segments(store, tmp_path / "segments")
    want = stats_from_frame(frame)
    assert_same_stats(stats_from_parquet(tmp_path / "segments"), want)
    assert int(want["rows"].sum()) == len(frame) > 0


def test_recorded_datasets_frame_and_parquet_agree(shared_data: Path, tmp_path: Path) -> None:
    sources = [
        shared_data / "reasoning_budget_sweep/reasoning_budget_sweep_math500.csv",
        shared_data / "matharena_aime2025_I/per_problem_accuracy.csv",  # aggregated rows
    ]
    with Store(tmp_path / "store.sqlite") as store:
        import_paths(store, sources)
        frame = _frame_and_segments(store, tmp_path / "segments")
    want = stats_from_frame(frame)
    assert_same_stats(stats_from_parquet(tmp_path / "segments"), want)
    assert set(want["dataset"]) == {"math500", "aime25"}
    assert int(want["rows"].sum()) == len(frame)
    assert (~want["sample"]).any() and (want["sample"] & (want["rows"] > 1)).any()


def test_connections_are_capped_and_spill_privately(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not DuckDB's 80% of RAM and `.tmp` in the working directory: 1GB (or
    $PONDER_DUCKDB_MEMORY) and a private temporary folder."""
    from ponder.columnar.stats import connect

    def setting(con: Any, name: str) -> str:
        return str(con.execute(f"SELECT current_setting('{name}')").fetchall()[0][0])

    monkeypatch.delenv("PONDER_DUCKDB_MEMORY", raising=False)
    con = connect()
    assert setting(con, "memory_limit") in ("953.6 MiB", "1.0 GB", "1000.0 MB")
    spill = Path(setting(con, "temp_directory"))
    assert spill.name.startswith("ponder-duckdb-") and spill.is_dir()
    con.close()
    monkeypatch.setenv("PONDER_DUCKDB_MEMORY", "256MB")
    con = connect()
    assert setting(con, "memory_limit") in ("244.1 MiB", "256.0 MB")
    con.close()
    monkeypatch.setenv("PONDER_DUCKDB_MEMORY", "lots")
    with pytest.raises(InputError, match="not a size"):
        connect()
