"""The cell table from the sufficient statistics and the token histogram equals today's
``cell_bootstrap`` of the rows: same cells, order, dtypes and values, and the same bootstrap
replicates for the same seed, through frame -> statistics and Parquet -> DuckDB ->
statistics, on synthetic rows, the built-in sweep, the recorded datasets and random frames.

Equality is exact (``check_exact``) wherever the sums are exact in binary: 0/1 correct and
integer token counts always, aggregated rows' fractions when dyadic. Other fractions are
summed in another order than the rows are, so there accuracy, its interval and the
replicates are compared within a relative 1e-12 (the last test says so)."""

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
    recorded_sources,
    synthetic_frame,
    with_frame_dtypes,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.builtin import builtin_folder
from ponder.columnar import (
    cell_bootstrap_from_parquet,
    cell_bootstrap_from_stats,
    cell_table_from_stats,
    histogram_from_frame,
    histogram_from_parquet,
    stats_from_frame,
    token_quantiles,
    write_segments,
)
from ponder.curves import CellBootstrap, cell_bootstrap, cell_table, compute_curves
from ponder.curves.derived import with_derived_caps
from ponder.errors import InputError
from ponder.importers import import_paths
from ponder.store import Store


def assert_same_cells(got: CellBootstrap, want: CellBootstrap, *, rtol: float = 0.0) -> None:
    """Tables equal exactly (dtypes and order too) and replicates bit-equal; with ``rtol``,
    the accuracy columns and replicates within it and everything else still exact."""
    exact = [c for c in want.table.columns if rtol == 0.0 or c not in ACCURACY_COLUMNS]
    pd.testing.assert_frame_equal(got.table[exact], want.table[exact], check_exact=True)
    assert list(got.table.columns) == list(want.table.columns)
    assert got.replicates.shape == want.replicates.shape
    if rtol == 0.0:
        assert np.array_equal(got.replicates, want.replicates, equal_nan=True)
        return
    pd.testing.assert_frame_equal(
        got.table[ACCURACY_COLUMNS],
        want.table[ACCURACY_COLUMNS],
        check_exact=False,
        rtol=rtol,
        atol=0,
    )
    np.testing.assert_allclose(got.replicates, want.replicates, rtol=rtol, atol=0)


def both_paths(
    frame: pd.DataFrame, root: Path, **options: Any
) -> tuple[CellBootstrap, CellBootstrap]:
    """The cell bootstrap via frame -> statistics and via Parquet segments -> DuckDB."""
    via_frame = cell_bootstrap_from_stats(
        stats_from_frame(frame), histogram_from_frame(frame), **options
    )
    write_segments(root, frame)
    return via_frame, cell_bootstrap_from_parquet(root, **options)


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return synthetic_frame(seed=4)


def test_token_quantiles_by_hand() -> None:
    histogram = pd.DataFrame({"output_tokens": [1, 2, 3, 10, 5, 7], "count": [1, 1, 1, 1, 2, 1]})
    cell = np.array([0, 0, 0, 0, 2, 2])  # cell 1 has no known lengths
    median, p90 = token_quantiles(histogram, cell, np.array([4, 0, 3]))
    # Lengths 1,2,3,10: median (2+3)/2, p90 at position 2.7: 3 + 7 * 0.7 (pandas' rounding).
    # Lengths 5,5,7: median 5, p90 at position 1.8: 5 + 2 * 0.8.
    assert median[0] == 2.5 and median[2] == 5.0 and np.isnan(median[1])
    assert p90[0] == 3 + 7 * (0.9 * 3 % 1) and p90[2] == 5 + 2 * (0.9 * 2 % 1)
    assert np.isnan(p90[1])
    rows = pd.Series([1.0, 2.0, 3.0, 10.0, 5.0, 5.0, 7.0], index=[0, 0, 0, 0, 2, 2, 2])
    grouped = rows.groupby(level=0)
    assert [median[0], median[2]] == grouped.median().tolist()
    assert [p90[0], p90[2]] == grouped.quantile(0.9).tolist()
    with pytest.raises(InputError, match="not of the same rows"):
        token_quantiles(histogram, cell, np.array([4, 0, 2]))


def test_histogram_frame_and_parquet_agree(synthetic: pd.DataFrame, tmp_path: Path) -> None:
    for i, chunk in enumerate(np.array_split(np.arange(len(synthetic)), 3)):
        write_segments(tmp_path, synthetic.iloc[chunk], segment_id=f"part{i}")
    want = histogram_from_frame(synthetic)
    pd.testing.assert_frame_equal(histogram_from_parquet(tmp_path), want, check_exact=True)
    assert int(want["count"].sum()) == int(synthetic["output_tokens"].notna().sum())
    assert want["budget"].isna().any() and (want["count"] > 1).any()  # ties are counted
    empty = histogram_from_parquet(tmp_path / "none")
    pd.testing.assert_frame_equal(empty, histogram_from_frame(synthetic.iloc[:0]))


def test_synthetic_rows_equal_through_both_paths(synthetic: pd.DataFrame, tmp_path: Path) -> None:
    want = cell_bootstrap(synthetic, n_boot=400, seed=7)
    via_frame, via_parquet = both_paths(synthetic, tmp_path, n_boot=400, seed=7)
    assert_same_cells(via_frame, want)
    assert_same_cells(via_parquet, want)
    table = want.table
    # The awkward cells are there: no budget, no token counts at all, aggregated rows.
    assert table["budget"].isna().any() and table["mean_tokens"].isna().any()
    assert (table["model"].str.startswith("agg")).any()
    assert set(table["ci_method"]) >= {"percentile", "wilson"}
    # The seed is honoured, not ignored: another one draws other replicates.
    other = cell_bootstrap_from_stats(
        stats_from_frame(synthetic), histogram_from_frame(synthetic), n_boot=400, seed=8
    )
    assert not np.array_equal(other.replicates, want.replicates, equal_nan=True)


def test_builtin_sweep_equals_todays_table(tmp_path: Path) -> None:
    with Store(tmp_path / "store.sqlite") as store:
        import_paths(store, [builtin_folder()])
        frame = store.outcomes_frame()
        write_segments(tmp_path / "segments", store.outcomes_frame(signals=True))
    want = cell_bootstrap(frame, n_boot=500, seed=3)
    via_frame = cell_bootstrap_from_stats(
        stats_from_frame(frame), histogram_from_frame(frame), n_boot=500, seed=3
    )
    assert_same_cells(via_frame, want)
    assert_same_cells(cell_bootstrap_from_parquet(tmp_path / "segments", n_boot=500, seed=3), want)
    # This sweep's budgets are forced, not hard caps: `ponder curves` derives nothing here.
    pd.testing.assert_frame_equal(compute_curves(frame, n_boot=500, seed=3).cells, want.table)


def test_recorded_datasets_equal_todays_table(shared_data: Path, tmp_path: Path) -> None:
    with Store(tmp_path / "store.sqlite") as store:
        import_paths(store, recorded_sources(shared_data))
        frame = store.outcomes_frame()
        write_segments(tmp_path / "segments", store.outcomes_frame(signals=True))
    want = cell_bootstrap(frame, n_boot=1000, seed=0)
    stats, histogram = stats_from_frame(frame), histogram_from_frame(frame)
    via_frame = cell_bootstrap_from_stats(stats, histogram)
    assert_same_cells(via_frame, want)
    assert_same_cells(cell_bootstrap_from_parquet(tmp_path / "segments"), want)
    assert set(want.table["dataset"]) == {"math500", "aime24", "aime25", "mmlu_pro_math", "gsm8k"}
    # `ponder curves` derives caps below the recorded hard caps by default: its recorded cells
    # are this table, and the derived ones are what the statistics path does not compute.
    full = compute_curves(frame, n_boot=200, seed=5).cells
    assert full["derived"].any()
    pd.testing.assert_frame_equal(
        full[~full["derived"]].reset_index(drop=True),
        cell_table_from_stats(stats, histogram, n_boot=200, seed=5),
        check_exact=True,
    )
    assert (frame["n_runs"] > 1).any() and frame["output_tokens"].isna().any()
    assert want.table["budget"].isna().any() and want.table["median_tokens"].notna().any()


def test_derived_rows_and_mismatched_inputs_are_refused(synthetic: pd.DataFrame) -> None:
    capped = (synthetic["budget_kind"] == "hard_cap") & synthetic["output_tokens"].notna()
    samples = synthetic[capped]
    derived = with_derived_caps(samples, [128.0])
    assert derived["derived"].any()
    for summarise in (stats_from_frame, histogram_from_frame):
        with pytest.raises(InputError, match="derived-cap rows"):
            summarise(derived)
    stats = stats_from_frame(synthetic)
    alpha = synthetic[synthetic["dataset"] == "alpha"]
    with pytest.raises(InputError, match="not of the same rows"):
        cell_table_from_stats(stats, histogram_from_frame(alpha), n_boot=10)
    with pytest.raises(InputError, match="a cell the statistics lack"):
        cell_table_from_stats(stats_from_frame(alpha), histogram_from_frame(synthetic), n_boot=10)
    with pytest.raises(InputError, match="lacks column"):
        cell_table_from_stats(stats.drop(columns="out_sum"), histogram_from_frame(synthetic))


@st.composite
def random_frames(draw: Any, runs: list[int]) -> pd.DataFrame:
    """Random outcome rows: two datasets, few problems, models and budgets (NULL among them),
    samples and aggregated rows with ``runs`` runs (2, 4: dyadic fractions, exact sums; 3, 7:
    not), NULL tokens and flags, tied lengths."""
    drawn = drawn_rows(
        draw,
        [1, 1, *runs],
        tokens=st.one_of(st.none(), st.integers(0, 12)),
        truncated=st.sampled_from([None, 0, 1]),
        answered=st.sampled_from([None, 0, 1]),
    )
    records = [
        drawn_record(
            i,
            r,
            output_tokens=np.nan if r["tokens"] is None else r["tokens"],
            truncated=np.nan if r["truncated"] is None else r["truncated"],
            answered=np.nan if r["answered"] is None else r["answered"],
        )
        for i, r in enumerate(drawn)
    ]
    return with_frame_dtypes(pd.DataFrame(records))


def check_random_frame(frame: pd.DataFrame, seed: int, *, rtol: float = 0.0) -> CellBootstrap:
    """Both paths give the rows' cell bootstrap (within ``rtol``); returns the frame path's."""
    want = cell_bootstrap(frame, n_boot=60, seed=seed)
    with tempfile.TemporaryDirectory() as folder:
        via_frame, via_parquet = both_paths(frame, Path(folder), n_boot=60, seed=seed)
    assert_same_cells(via_frame, want, rtol=rtol)
    assert_same_cells(via_parquet, want, rtol=rtol)
    return via_frame


@settings(max_examples=60, deadline=None)
@given(frame=random_frames(runs=[2, 4]), seed=st.integers(0, 2**16))
def test_random_frames_equal_exactly(frame: pd.DataFrame, seed: int) -> None:
    via_frame = check_random_frame(frame, seed)
    assert cell_table(frame, n_boot=60, seed=seed).equals(via_frame.table)


@settings(max_examples=40, deadline=None)
@given(frame=random_frames(runs=[3, 7]), seed=st.integers(0, 2**16))
def test_random_fractions_equal_within_summation_order(frame: pd.DataFrame, seed: int) -> None:
    check_random_frame(frame, seed, rtol=FLOAT_RTOL)
