"""Every curve computed out of core, a batch of models at a time
(``ponder.columnar.batched``), equals the in-memory tables of the same segments (all side
tables at once, then the public functions with one shared resampler) and today's
``compute_curves`` of the rows: same rows, order, dtypes and values, whatever the batch size.

Exact everywhere the sums are exact (0/1 correct, dyadic fractions). The synthetic frame's
aggregated rows hold fractions like 2/7 in a dataset without samples: its solve rates are
summed per row here and per group in memory, so the difficulty accuracy and interval are
compared within FLOAT_RTOL there (the bins themselves come out equal)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from columnar_helpers import (
    ACCURACY_COLUMNS,
    FLOAT_RTOL,
    drawn_record,
    drawn_rows,
    synthetic_frame,
    with_frame_dtypes,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.builtin import builtin_folder
from ponder.columnar import (
    ColumnarCurves,
    answers_from_parquet,
    cell_bootstrap_from_stats,
    curves_from_parquet,
    difficulty_table_from_stats,
    histogram_from_parquet,
    maj_at_k_from_stats,
    pass_at_k_from_stats,
    problem_levels,
    stats_from_parquet,
    write_segments,
)
from ponder.columnar.batched import plan_batches
from ponder.curves import ProblemResampler, compute_curves, sweet_spot_table
from ponder.errors import InputError, StoreError
from ponder.grading import normalize_answer
from ponder.importers import import_paths
from ponder.store import Store

TABLES = ("cells", "sweet_spots", "pass_at_k", "maj_at_k", "difficulty")


def in_memory(
    root: Path, levels: pd.DataFrame | None, *, n_boot: int, seed: int, normalize: Any
) -> dict[str, pd.DataFrame]:
    """Every table from the whole side tables at once, on one resampler."""
    stats = stats_from_parquet(root)
    histogram = histogram_from_parquet(root)
    answers = answers_from_parquet(root, normalize=normalize)
    shared = {"resampler": ProblemResampler.from_frame(stats, n_boot=n_boot, seed=seed)}
    cells = cell_bootstrap_from_stats(stats, histogram, **shared)
    return {
        "cells": cells.table,
        "sweet_spots": sweet_spot_table(cells=cells),
        "pass_at_k": pass_at_k_from_stats(stats, **shared),
        "maj_at_k": maj_at_k_from_stats(stats, answers, seed=seed, **shared),
        "difficulty": difficulty_table_from_stats(stats, levels, **shared),
    }


def assert_tables(got: ColumnarCurves, want: dict[str, Any], *, rtol: float = 0.0) -> None:
    """Each table equal exactly; with ``rtol``, the difficulty accuracy and interval within
    it (and only there)."""
    for name in TABLES:
        table, expected = getattr(got, name), want[name]
        if name == "difficulty" and rtol:
            exact = [c for c in expected.columns if c not in (*ACCURACY_COLUMNS, "ci_method")]
            pd.testing.assert_frame_equal(table[exact], expected[exact], check_exact=True)
            for column in ACCURACY_COLUMNS:
                np.testing.assert_allclose(table[column], expected[column], rtol=rtol, atol=0)
            continue
        pd.testing.assert_frame_equal(table, expected, check_exact=True, obj=name)


def written(frame: pd.DataFrame, root: Path, parts: int = 3) -> Path:
    """The rows as several segments per dataset, as successive imports write them."""
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        if len(chunk):
            write_segments(root, frame.iloc[chunk], segment_id=f"part{i}")
    return root


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return synthetic_frame(seed=11)


@pytest.mark.parametrize("max_groups", [1, 40, 10**9])
def test_batches_equal_the_in_memory_tables(
    synthetic: pd.DataFrame, tmp_path: Path, max_groups: int
) -> None:
    root = written(synthetic, tmp_path)
    levels = problem_levels(synthetic)
    want = in_memory(root, levels, n_boot=300, seed=4, normalize=normalize_answer)
    laps: dict[str, float] = {}
    got = curves_from_parquet(root, levels, n_boot=300, seed=4, max_groups=max_groups, laps=laps)
    assert_tables(got, want, rtol=FLOAT_RTOL)
    models = synthetic[["dataset", "model"]].drop_duplicates()
    # One batch per model of a dataset at 1 group, one per dataset when everything fits.
    expected = {1: len(models), 10**9: synthetic["dataset"].nunique()}
    assert got.batches == expected.get(max_groups, got.batches)
    assert synthetic["dataset"].nunique() <= got.batches <= len(models)
    assert {"survey", "queries", "cells", "pass_at_k", "maj_at_k"} <= set(laps)
    assert len(got.sweet_spots) and len(got.maj_at_k) and got.cells["budget"].isna().any()


def test_builtin_sweep_equals_compute_curves(tmp_path: Path) -> None:
    with Store(tmp_path / "store.sqlite") as store:
        import_paths(store, [builtin_folder()])
        frame = store.outcomes_frame()
        levels = store.problems_frame()
    root = written(frame, tmp_path / "segments")
    want = compute_curves(frame, n_boot=300, seed=0, normalize=normalize_answer)
    assert not want.cells["derived"].any()  # forced budgets: nothing derived
    for max_groups in (1, 10**9):
        got = curves_from_parquet(root, levels, n_boot=300, max_groups=max_groups)
        assert_tables(got, {name: getattr(want, name) for name in TABLES})


def test_plan_keeps_models_whole_and_batches_bounded() -> None:
    models = pd.DataFrame(
        {
            "dataset": ["a", "a", "a", "a", "b"],
            "model": ["m1", "m2", "m3", "m4", "m1"],
            "groups": [30, 30, 90, 10, 5],
        }
    )
    batches = plan_batches(models, 60)
    assert [(b.dataset, b.first, b.last, b.groups) for b in batches] == [
        ("a", "m1", "m2", 60),
        ("a", "m3", "m3", 90),  # a model above the bound is a batch of its own
        ("a", "m4", "m4", 10),
        ("b", "m1", "m1", 5),
    ]


def test_bad_input_is_one_clear_error(synthetic: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no outcome segments"):
        curves_from_parquet(tmp_path / "none")
    root = written(synthetic, tmp_path / "segments")
    for bad in (0, -3, True, 2.5):
        with pytest.raises(InputError, match="max_groups"):
            curves_from_parquet(root, max_groups=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="memory limit"):
        curves_from_parquet(root, memory_limit="lots")
    victim = sorted(root.rglob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(StoreError, match=victim.name):
        curves_from_parquet(root)


def test_memory_limit_and_spill_folder_are_honoured(
    synthetic: pd.DataFrame, tmp_path: Path
) -> None:
    root = written(synthetic, tmp_path / "segments")
    spill = tmp_path / "spill"
    want = curves_from_parquet(root, n_boot=50)
    got = curves_from_parquet(
        root, n_boot=50, memory_limit="64MB", temp_directory=spill, max_groups=20
    )
    assert_tables(got, {name: getattr(want, name) for name in TABLES})


@st.composite
def random_frames(draw: Any) -> pd.DataFrame:
    """Random rows with answers: two datasets, few problems, models and budgets, samples and
    aggregated rows with dyadic fractions (exact sums), NULL and blank answers."""
    drawn = drawn_rows(
        draw,
        [1, 1, 1, 2, 4],
        answer=st.sampled_from([None, "", "1", " 1", "2", "x"]),
        answered=st.sampled_from([None, 0, 1]),
        tokens=st.one_of(st.none(), st.integers(0, 9)),
    )
    records = [
        drawn_record(
            i,
            r,
            answered=np.nan if r["answered"] is None else r["answered"],
            extracted_answer=r["answer"],
            output_tokens=np.nan if r["tokens"] is None else r["tokens"],
            level=float(1 + r["problem"] % 3) if r["dataset"] == "d1" else np.nan,
        )
        for i, r in enumerate(drawn)
    ]
    return with_frame_dtypes(pd.DataFrame(records))


@settings(max_examples=30, deadline=None)
@given(frame=random_frames(), seed=st.integers(0, 2**16), max_groups=st.integers(1, 8))
def test_random_frames_equal_exactly(frame: pd.DataFrame, seed: int, max_groups: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = written(frame, Path(folder), parts=2)
        levels = problem_levels(frame)
        want = in_memory(root, levels, n_boot=40, seed=seed, normalize=str.strip)
        got = curves_from_parquet(
            root, levels, n_boot=40, seed=seed, normalize=str.strip, max_groups=max_groups
        )
    assert_tables(got, want)
