"""Parquet segments: exact round trips, the folder layout, refused values, and damaged or
foreign files reported in one line naming the file while the other files stay readable."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from columnar_helpers import by_dataset, synthetic_frame

from ponder.columnar import (
    SEGMENT_COLUMNS,
    SEGMENT_SCHEMA,
    list_segments,
    outcome_frame,
    read_segments,
    segment_table,
    stats_from_parquet,
    write_segments,
)
from ponder.errors import InputError, StoreError


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_frame(seed=1)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


def test_frame_round_trip_is_exact(frame: pd.DataFrame, tmp_path: Path) -> None:
    written = write_segments(tmp_path, frame, segment_id="s1")
    # One file per dataset, each under its percent-encoded dataset folder.
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "outcomes/dataset=alpha/s1.parquet",
        "outcomes/dataset=beta%2Ftwo%20words/s1.parquet",
        "outcomes/dataset=gamma/s1.parquet",
    ]
    for path in written:
        assert pq.ParquetFile(path).schema_arrow.equals(SEGMENT_SCHEMA)
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    back = outcome_frame(read_segments(tmp_path))
    columns = [c for c in frame.columns if c in SEGMENT_COLUMNS]
    assert len(columns) == len(frame.columns) - 2  # all but level and subject (problems')
    pd.testing.assert_frame_equal(back[columns], by_dataset(frame)[columns], check_exact=True)
    # Columns the frame did not have are NULL.
    assert back["response_text"].isna().all() and back["chain_id"].isna().all()


def test_arrow_round_trip_and_dataset_filter(frame: pd.DataFrame, tmp_path: Path) -> None:
    write_segments(tmp_path / "a", frame)
    write_segments(tmp_path / "a", frame.iloc[:100])  # a second segment per dataset
    table = read_segments(tmp_path / "a")
    assert table.num_rows == len(frame) + 100
    write_segments(tmp_path / "b", table)
    assert read_segments(tmp_path / "b").equals(table)
    gamma = read_segments(tmp_path / "a", datasets=["gamma"])
    assert set(gamma.column("dataset").to_pylist()) == {"gamma"}
    assert gamma.num_rows == int((frame["dataset"] == "gamma").sum()) + int(
        (frame["dataset"].iloc[:100] == "gamma").sum()
    )
    assert read_segments(tmp_path / "a", datasets=["absent"]).num_rows == 0
    assert read_segments(tmp_path / "nothing").schema.equals(SEGMENT_SCHEMA)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("budget", 1.5, "truncated"),  # a budget SQLite would keep as REAL: not int32
        ("output_tokens", float(2**31), "int32"),
        ("correct", 1.5, "[0, 1]"),
        ("model", None, "NOT NULL"),
        ("n_runs", None, "NOT NULL"),
    ],
)
def test_values_a_segment_cannot_hold_exactly_are_refused(
    frame: pd.DataFrame, tmp_path: Path, column: str, value: Any, reason: str
) -> None:
    bad = frame.copy()
    if column == "n_runs":
        bad[column] = bad[column].astype("float64")
    bad.loc[5, column] = value
    with pytest.raises(InputError) as info:
        write_segments(tmp_path, bad)
    assert info.value.field == column and reason in _one_line(info.value)
    assert list_segments(tmp_path) == []


def test_missing_required_column_is_refused(frame: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="missing column") as info:
        segment_table(frame.drop(columns=["budget_kind"]))
    assert info.value.field == "budget_kind"


def test_segments_are_never_replaced(frame: pd.DataFrame, tmp_path: Path) -> None:
    write_segments(tmp_path, frame, segment_id="same")
    with pytest.raises(StoreError, match="already exists"):
        write_segments(tmp_path, frame.iloc[:10], segment_id="same")
    with pytest.raises(InputError, match="not a plain name"):
        write_segments(tmp_path, frame, segment_id="../escape")
    assert read_segments(tmp_path).num_rows == len(frame)


def _two_datasets(frame: pd.DataFrame, root: Path) -> tuple[Path, Path, Path]:
    """alpha with two segments, gamma with one; returns (alpha 1, alpha 2, gamma)."""
    first = write_segments(root, frame[frame["dataset"] != "beta/two words"], segment_id="a")
    second = write_segments(root, frame[frame["dataset"] == "alpha"].iloc[:50], segment_id="b")
    return first[0], second[0], first[1]


def test_truncated_segment_is_one_line_naming_it(frame: pd.DataFrame, tmp_path: Path) -> None:
    alpha_a, alpha_b, gamma = _two_datasets(frame, tmp_path)
    intact = alpha_a.read_bytes()
    data = alpha_b.read_bytes()
    alpha_b.write_bytes(data[: len(data) // 2])
    for read in (read_segments, stats_from_parquet):
        with pytest.raises(StoreError) as info:
            read(tmp_path)
        message = _one_line(info.value)
        assert message.startswith(f"{alpha_b}: not a readable Parquet segment")
    # The other dataset still reads, and nothing else was touched.
    assert read_segments(tmp_path, datasets=["gamma"]).num_rows == pq.read_metadata(gamma).num_rows
    assert alpha_a.read_bytes() == intact and alpha_b.exists()
    alpha_b.unlink()
    assert (
        read_segments(tmp_path, datasets=["alpha"]).num_rows == pq.read_metadata(alpha_a).num_rows
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda t: t.set_column(5, "budget", t["budget"].cast(pa.int64())),
            "budget is int64, expected int32",
        ),
        (lambda t: t.drop_columns(["latency_s"]), "missing latency_s"),
        (lambda t: t.append_column("extra", pa.nulls(t.num_rows, pa.int8())), "unexpected extra"),
        (lambda t: t.select(list(reversed(t.column_names))), "columns in another order"),
    ],
)
def test_foreign_schema_is_one_line_naming_the_file(
    frame: pd.DataFrame, tmp_path: Path, change: Callable[[pa.Table], pa.Table], problem: str
) -> None:
    _, alpha_b, _ = _two_datasets(frame, tmp_path)
    foreign = change(pq.read_table(alpha_b))
    pq.write_table(foreign, alpha_b)
    with pytest.raises(StoreError) as info:
        read_segments(tmp_path)
    assert _one_line(info.value) == f"{alpha_b}: foreign schema ({problem})"
    assert read_segments(tmp_path, datasets=["gamma"]).num_rows > 0


def test_segment_in_another_datasets_folder_is_refused(frame: pd.DataFrame, tmp_path: Path) -> None:
    _, _, gamma = _two_datasets(frame, tmp_path)
    moved = tmp_path / "outcomes" / "dataset=alpha" / "moved.parquet"
    moved.write_bytes(gamma.read_bytes())
    with pytest.raises(StoreError) as info:
        read_segments(tmp_path, datasets=["alpha"])
    assert _one_line(info.value) == (
        f"{moved}: holds rows of dataset 'gamma'..'gamma', but its folder is for 'alpha'"
    )


def test_failed_write_leaves_no_segment_and_no_temp_file(
    frame: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)  # the rename after the temp file is written
    with pytest.raises(OSError, match="disk full"):
        write_segments(tmp_path, frame)
    assert list_segments(tmp_path) == []
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_crash_before_rename_leaves_no_listed_segment(frame: pd.DataFrame, tmp_path: Path) -> None:
    rows = tmp_path / "rows.parquet"
    pq.write_table(segment_table(frame[frame["dataset"] == "alpha"]), rows)
    root = tmp_path / "store.parquet"
    write_segments(root, frame[frame["dataset"] == "gamma"])
    script = (
        "import os, sys\n"
        "import pyarrow.parquet as pq\n"
        "from ponder.columnar import segments\n"
        "segments.os.replace = lambda src, dst: os._exit(7)  # the process dies here\n"
        "segments.write_segments(sys.argv[1], pq.read_table(sys.argv[2]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(root), str(rows)], capture_output=True, text=True
    )
    assert done.returncode == 7, done.stderr
    leftovers = list((root / "outcomes" / "dataset=alpha").iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".")  # the temp file, complete
    assert pq.read_metadata(leftovers[0]).num_rows == int((frame["dataset"] == "alpha").sum())
    assert [p.parent.name for p in list_segments(root)] == ["dataset=gamma"]
    table = read_segments(root)
    assert set(table.column("dataset").to_pylist()) == {"gamma"}


def test_outcome_frame_dtypes_match_the_store_frame(frame: pd.DataFrame) -> None:
    back = outcome_frame(segment_table(frame))
    for column in SEGMENT_COLUMNS:
        if column in frame.columns:
            assert back[column].dtype == frame[column].dtype, column
    assert back["sample_idx"].dtype == np.int64 and back["budget"].dtype == np.float64
