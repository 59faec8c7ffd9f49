"""Cell-table details pinned by hand-built frames: defaults, dtypes, budget kinds, derived
flags, unknown correctness and the error for a frame without the needed columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ponder.curves import ProblemResampler, cell_bootstrap, cell_table, paired_difference_interval
from ponder.errors import InputError


def test_defaults_are_1000_resamples_and_seed_0(make_grid) -> None:
    frame = make_grid(n_problems=30)
    # Fractional scores make every resample's value distinct, so the interval moves with the
    # number of resamples and the seed (0/1 scores give ties that hide both).
    frame["correct"] = np.random.default_rng(1).random(len(frame))
    default = cell_table(frame)
    pd.testing.assert_frame_equal(default, cell_table(frame, n_boot=1000, seed=0), check_exact=True)
    for other in ({"n_boot": 1001, "seed": 0}, {"n_boot": 1000, "seed": 1}):
        assert not default["ci_low"].equals(cell_table(frame, **other)["ci_low"])
    boot = cell_bootstrap(frame)
    pd.testing.assert_frame_equal(boot.table, default, check_exact=True)
    assert boot.replicates.shape == (1000, 2)
    assert boot.bootstrap.n_resamples.tolist() == [1000, 1000]
    resampler = ProblemResampler.from_frame(frame)
    assert (resampler.n_boot, resampler.seed) == (1000, 0)


def test_a_given_resampler_is_used(make_grid) -> None:
    frame = make_grid(n_problems=30)
    mine = ProblemResampler.from_frame(frame, n_boot=300, seed=42)
    boot = cell_bootstrap(frame, resampler=mine)
    assert boot.replicates.shape == (300, 2)
    pd.testing.assert_frame_equal(boot.table, cell_table(frame, resampler=mine))
    pd.testing.assert_frame_equal(boot.table, cell_table(frame, n_boot=300, seed=42))
    assert not boot.table.equals(cell_table(frame, n_boot=300, seed=0))
    # The level is passed through: an 80% interval is the 10% / 90% quantiles.
    narrow = cell_table(frame, resampler=mine, ci=0.8)
    reps = boot.replicates
    np.testing.assert_allclose(narrow["ci_low"], np.quantile(reps, 0.1, axis=0), atol=1e-12)
    np.testing.assert_allclose(narrow["ci_high"], np.quantile(reps, 0.9, axis=0), atol=1e-12)


def test_column_types_and_budget_kinds(make_outcomes) -> None:
    frame = pd.concat(
        [
            make_outcomes(budget=1024.0, budget_kind="hard_cap", correct=[1.0, 0.0, 1.0]),
            make_outcomes(budget=np.nan, budget_kind="none", correct=[1.0, 1.0, 0.0]),
            make_outcomes(
                budget=2048.0, budget_kind=["hard_cap", "soft", "soft"], correct=[0.0, 0.0, 1.0]
            ),
        ],
        ignore_index=True,
    )
    table = cell_table(frame, n_boot=50)
    assert table["budget"].tolist()[:2] == [1024.0, 2048.0] and np.isnan(table["budget"].iloc[2])
    assert table["budget_kind"].tolist() == ["hard_cap", "mixed", "none"]
    assert table["n_samples"].dtype == np.int64 and table["n_samples"].tolist() == [3, 3, 3]
    assert table["n_problems"].dtype == np.int64 and table["n_problems"].tolist() == [3, 3, 3]
    assert table["source_budget"].dtype == np.float64 and table["source_budget"].isna().all()
    assert table["derived"].tolist() == [False, False, False]
    no_kind = cell_table(frame.drop(columns="budget_kind"), n_boot=50)
    assert no_kind["budget_kind"].tolist() == ["none"] * 3


def test_one_derived_row_makes_a_derived_cell(make_outcomes) -> None:
    frame = make_outcomes(
        budget=[1024.0, 1024.0, 512.0],
        correct=[1.0, 0.0, 1.0],
        problem_id=["p0", "p1", "p0"],
    )
    frame["derived"] = [False, False, True]
    frame["source_budget"] = [np.nan, np.nan, 1024.0]
    table = cell_table(frame, n_boot=50).set_index("budget")
    assert table.loc[512.0, "derived"] and not table.loc[1024.0, "derived"]
    assert table.loc[512.0, "source_budget"] == 1024.0
    assert np.isnan(table.loc[1024.0, "source_budget"])


def test_unknown_correctness_is_left_out_of_estimate_and_interval(make_outcomes) -> None:
    known = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0] * 3
    ids = [f"p{i:02d}" for i in range(30)]
    clean = make_outcomes(problem_id=ids, correct=known)
    # The same cell plus rows of unknown correctness on the same problems.
    noisy = pd.concat(
        [clean, make_outcomes(problem_id=ids[:12], correct=[np.nan] * 12, sample_idx=1)],
        ignore_index=True,
    )
    a = cell_table(clean, n_boot=400).iloc[0]
    b = cell_table(noisy, n_boot=400).iloc[0]
    assert b["accuracy"] == a["accuracy"] == np.mean(known)
    assert (b["ci_low"], b["ci_high"]) == (a["ci_low"], a["ci_high"])
    assert np.isfinite(b["ci_low"]) and b["n_problems"] == 30 and b["n_samples"] == 42


def test_missing_columns_name_the_table() -> None:
    frame = pd.DataFrame({"model": ["m"], "dataset": ["d"], "problem_id": ["p"]})
    with pytest.raises(InputError, match=r"lacks column\(s\) \['mode', 'budget', 'correct'\]"):
        cell_table(frame)
    with pytest.raises(InputError, match=r"needed for the cell table$"):
        cell_table(frame)


def test_paired_difference_interval_level() -> None:
    a = np.linspace(0.0, 1.0, 101)
    b = np.zeros(101)
    assert paired_difference_interval(a, b) == pytest.approx((0.025, 0.975), abs=1e-12)
    assert paired_difference_interval(a, b, ci=0.8) == pytest.approx((0.1, 0.9), abs=1e-12)
    # Resamples where either side is undefined are left out.
    a[:50] = np.nan
    assert paired_difference_interval(a, b, ci=0.5) == pytest.approx((0.625, 0.875), abs=1e-12)


def test_rows_outside_a_given_resampler_are_left_out(make_outcomes) -> None:
    """A resampler built on other problems: rows of unknown problems or datasets never count."""
    ids = [f"p{i}" for i in range(8)]
    known = make_outcomes(problem_id=ids, correct=[1.0, 0.0] * 4)
    resampler = ProblemResampler.from_frame(known, n_boot=200, seed=5)
    extra = pd.concat(
        [
            known,
            make_outcomes(problem_id=["p8", "p9"], correct=[1.0, 1.0]),  # not in the universe
            make_outcomes(problem_id=["p0"], correct=[1.0], dataset="other", model="m"),
            make_outcomes(problem_id=["p0"], correct=[1.0], dataset="a-first", model="m"),
        ],
        ignore_index=True,
    )
    with_extra = cell_bootstrap(extra, resampler=resampler)
    alone = cell_bootstrap(known, resampler=resampler)
    row = with_extra.table.set_index("dataset").loc["ds"]
    assert row["accuracy"] == 0.6  # the estimate uses every row: 6 of 10
    # Cells sort by dataset: a-first (unknown), ds, other (unknown). An unknown dataset
    # sorting first must not stop the others from getting their interval.
    np.testing.assert_array_equal(with_extra.replicates[:, 1], alone.replicates[:, 0])
    assert np.isnan(with_extra.replicates[:, [0, 2]]).all()
    assert np.isfinite(row["ci_low"]) and row["ci_low"] == alone.table["ci_low"].iloc[0]


def test_local_codes_are_positions_in_the_sorted_universe(make_outcomes) -> None:
    frame = make_outcomes(problem_id=["b", "a", "c", "a"], correct=[1.0, 0.0, 1.0, 1.0])
    resampler = ProblemResampler.from_frame(frame.iloc[:3], n_boot=10)
    assert list(resampler.universe("ds")) == ["a", "b", "c"]
    other = pd.concat([frame, make_outcomes(problem_id=["z", "a"], dataset="elsewhere")])
    assert resampler.local_codes(other).tolist() == [1, 0, 2, 0, -1, -1]
